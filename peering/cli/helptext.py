"""Help texts of the `peering` commands, laid out like Consul's: a usage line, what it does, an example.

`USAGE` and `DESCRIPTIONS` are keyed by the command's path (`"read"`, `"acl token create"`); a
command without an entry keeps argparse's generated usage and its one-line summary.
"""

from __future__ import annotations

ROOT_USAGE = "peering [--version] [-help] <command> [<args>]"
GROUP_USAGE = "<command> [options] [args]"

USAGE: dict[str, str] = {
    "generate-token": "[options] -name <peer name>",
    "establish": "[options] -name <peer name> -peering-token <token>",
    "read": "[options] -name <peer name>",
    "list": "[options]",
    "delete": "[options] -name <peer name>",
    "check": "[options] -name <peer name> -peering-token <token>",
    "openapi": "",
    "help": "[<command> ...]",
    "version": "",
    "acl bootstrap": "[options]",
    "acl policy create": "-name NAME [-rules RULES] [options]",
    "acl policy read": "[options] -id ID | -name NAME",
    "acl policy list": "[options]",
    "acl policy delete": "[options] -id ID | -name NAME",
    "acl token create": "[options]",
    "acl token read": "[options] -id ID | -self",
    "acl token list": "[options]",
    "acl token delete": "[options] -id ID",
    "config write": "[options] <file or ->",
    "config read": "[options] -kind <config kind> -name <config name>",
    "config list": "[options] -kind <config kind>",
    "config delete": "[options] -kind <config kind> -name <config name>",
    "services export": "[options] -name <service name> -consumer-peers <other cluster name>",
    "services exported-services": "[options]",
    "services imported-services": "[options]",
    "exported-services": "[options] -name <peer name>",
    "catalog services": "[options]",
}

DESCRIPTIONS: dict[str, str] = {
    "generate-token": """\
  Generate a peering token for the peer cluster named by -name. The other cluster passes it
  to 'peering establish' to connect. Generating again for the same name keeps the peering and
  voids the previous unused token; an active connection is not interrupted.

  Example:

    $ peering generate-token -name cluster-02 -meta env=production""",
    "establish": """\
  Establish a peering connection with the cluster that generated -peering-token. A token
  works once; the command returns when the connection is active.

  Example:

    $ peering establish -name cluster-01 -peering-token "$TOKEN\"""",
    "read": """\
  Show the peering connection named by -name. When there is none, the command says so and
  exits 1.

  Example:

    $ peering read -name cluster-02""",
    "list": """\
  List the peering connections of the partition, sorted by name.

  Example:

    $ peering list -format json""",
    "delete": """\
  Delete the peering connection named by -name. The peer is told and turns TERMINATED; here
  the peering shows DeletedAt until it is removed.

  Example:

    $ peering delete -name cluster-02""",
    "check": """\
  Check a peering token as 'peering establish' would, without using it: the cluster that
  generated it is asked whether its one-time secret is still good. Nothing changes on either
  side. Exits 0 when establish would succeed, 1 when it would not.

  Example:

    $ peering check -name cluster-01 -peering-token "$TOKEN\"""",
    "openapi": """\
  Print the client API's OpenAPI document (JSON) on standard output.

  Example:

    $ peering openapi > openapi.json""",
    "help": """\
  Show the help of a command; without one, the list of commands.

  Example:

    $ peering help acl token create""",
    "version": """\
  Print the version of peering (the same as 'peering --version').""",
    "acl": """\
  Manage access control: bootstrap the ACL system, then create policies and the tokens that
  carry them. Needs a server started with --acl-enabled.""",
    "acl policy": """\
  Create, read, list and delete ACL policies. Rules are HCL or JSON, e.g.
  peering = "write".""",
    "acl token": """\
  Create, read, list and delete ACL tokens. A token's SecretID is shown once, when it is
  created.""",
    "acl bootstrap": """\
  Create the first management token. It works once per cluster; its SecretID is shown this
  once.

  Example:

    $ peering acl bootstrap""",
    "acl policy create": """\
  Create an ACL policy. -rules takes the rules themselves, @file to read them from a file, or -
  to read standard input.

  Example:

    $ peering acl policy create -name peering-write -rules 'peering = "write"'""",
    "acl policy read": """\
  Show one ACL policy, named by -id or -name.

  Example:

    $ peering acl policy read -name peering-write""",
    "acl policy list": """\
  List every ACL policy.

  Example:

    $ peering acl policy list""",
    "acl policy delete": """\
  Delete one ACL policy, named by -id or -name.

  Example:

    $ peering acl policy delete -name peering-write""",
    "acl token create": """\
  Create an ACL token linked to policies. Its SecretID is printed this once.

  Example:

    $ peering acl token create -description ci -policy-name peering-write -expires-ttl 1h""",
    "acl token read": """\
  Show one ACL token (never its SecretID): -id names it, -self shows the token this command
  runs with.

  Example:

    $ peering acl token read -self""",
    "acl token list": """\
  List every ACL token (never their SecretIDs).

  Example:

    $ peering acl token list""",
    "acl token delete": """\
  Delete an ACL token; it stops working at once.

  Example:

    $ peering acl token delete -id 2940def0-58f5-4ad5-aa6c-caec80371b0f""",
    "config": """\
  Write, read, list and delete config entries. The one kind the cluster knows is
  exported-services: which services each peer receives.""",
    "config write": """\
  Create or update a config entry. The argument is a file, or - to read standard input; the
  entry is HCL or JSON. With -cas the entry is written only if its ModifyIndex is still
  -modify-index (0: only if there is none yet); otherwise the command says it was not updated
  and exits 1.

  Example (from file):

    $ peering config write exported-services.hcl

  Example (from stdin):

    $ peering config write -""",
    "config read": """\
  Show the config entry of -kind and -name as JSON, with its CreateIndex and ModifyIndex.

  Example:

    $ peering config read -kind exported-services -name default""",
    "config list": """\
  List the names of the config entries of -kind, one a line.

  Example:

    $ peering config list -kind exported-services""",
    "config delete": """\
  Delete the config entry of -kind and -name. Deleting the exported-services entry stops every
  export: the peers drop what they imported. With -cas it is deleted only if its ModifyIndex is
  still -modify-index.

  Example:

    $ peering config delete -kind exported-services -name default""",
    "services": """\
  Export services to peers, and list what is exported and what was imported.""",
    "services export": """\
  Export a service to peered clusters: the partition's exported-services entry is read, the
  service and every missing peer of -consumer-peers are added, and it is written back only if
  nobody changed it meanwhile. The peers are this cluster's local names for the peerings.

  Example:

    $ peering services export -name web -consumer-peers cluster-02""",
    "services exported-services": """\
  List the exported services and the peers that receive each one. Wildcards are expanded.

  Example:

    $ peering services exported-services""",
    "services imported-services": """\
  List the services imported from peers and the peering each one comes from.

  Example:

    $ peering services imported-services""",
    "exported-services": """\
  List the services exported to the peer with the given name. If the peering is not found, the
  command exits 1.

  Example:

    $ peering exported-services -name cluster-02""",
    "catalog": """\
  Look at the service catalog.""",
    "catalog services": """\
  List the services of the catalog, one a line. -peer lists those imported over that peering
  instead (Consul's CLI cannot); -node only those of one node.

  Example:

    $ peering catalog services -tags

  Example (imported from a peer):

    $ peering catalog services -peer cluster-01""",
}

"""The console's services and exports screens in real headless Chromium against real clusters (SPEC §13,
§14, §16): health by Consul's precedence and a failing check turning a service critical live, a
service's instances and checks, exports added and removed through the exported-services entry with
compare-and-set (the server's 400 shown as it is), and the walk between two peered clusters: an
export made on A's console appears, with health, on B's services page and both peering pages. Every
test fails on any console error and any request to a host other than the clusters.

`PEERING_UI_SCREENSHOTS=docs` also writes docs/console-services*.png and docs/console-exports.png.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.browser import (
    Watch,
    api_client,
    axe_script,
    axe_violations,
    front,
    host_of,
    http_check,
    launched,
    mark,
    new_context,
    peer_clusters,
    register,
    set_token,
    shot,
    still_same,
)
from tests.cluster import running_cluster

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

pytestmark = pytest.mark.slow

FAST = ("--heartbeat-interval", "0.2", "--heartbeat-timeout", "5")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as chromium:
        yield chromium


@pytest.fixture(autouse=True)
def _expect_timeout() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)


def populate(api: httpx.Client) -> None:
    """web: passing + warning; db: one instance on a node whose node check is critical; cache: no checks;
    api (the agent's own node): in maintenance."""
    web1 = {"ID": "web-1", "Service": "web", "Tags": ["v1", "blue"], "Port": 8080}
    register(api, "n1", "10.0.0.1", web1, http_check("web-1", "passing", "HTTP GET /health: 200 OK"))
    web2 = {"ID": "web-2", "Service": "web", "Tags": ["v2"], "Address": "10.0.1.2", "Port": 8081}
    register(api, "n2", "10.0.0.2", web2, http_check("web-2", "warning", "HTTP GET /health: 200 OK in 900 ms (slow)"))
    register(api, "n1", "10.0.0.1", {"ID": "db-1", "Service": "db", "Port": 5432})
    serf = {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "critical", "Output": "Agent not live"}
    register(api, "n3", "10.0.0.3", {"ID": "db-2", "Service": "db", "Port": 5432}, serf)
    register(api, "n2", "10.0.0.2", {"ID": "cache-1", "Service": "cache", "Port": 6379})
    api.put("/v1/agent/service/register", json={"Name": "api", "ID": "api-1", "Port": 9000}).raise_for_status()
    api.put("/v1/agent/service/maintenance/api-1", params={"enable": "true", "reason": "upgrade"}).raise_for_status()


def test_services_show_health_by_precedence_and_a_failing_check_turns_critical(
    browser: Browser, tmp_path: Path
) -> None:
    """The list's counts and health by Consul's precedence, the detail's instances and checks, and a check
    that fails through the API turning the service critical on the open pages without a reload."""
    from playwright.sync_api import expect

    with running_cluster(tmp_path / "a", "--node-name", "agent-node") as a:
        watch = Watch({host_of(a.http_url)})
        context = new_context(browser, watch, [a])
        page = context.new_page()
        page.goto(f"{a.http_url}/ui/services")
        expect(page.get_by_role("heading", name="There are no services in this cluster's catalog.")).to_be_visible()
        mark(page)
        with api_client(a) as api:
            populate(api)
            rows = page.locator("tr[data-service]")
            expect(rows).to_have_count(4)  # live: registered after the page opened
            expect(rows.locator("th")).to_have_text(["api", "cache", "db", "web"])
            expected = {"web": "warning", "db": "critical", "cache": "none", "api": "maintenance"}
            for name, status in expected.items():
                expect(page.locator(f'tr[data-service="{name}"]')).to_have_attribute("data-health", status)
            web = page.locator('tr[data-service="web"]')
            expect(web.locator("td.num")).to_have_text("2")
            expect(web.locator(".health")).to_have_text(["! 1 warning", "✓ 1 passing"])
            expect(web.locator(".tag")).to_have_text(["blue", "v1", "v2"])
            expect(page.locator('tr[data-service="db"] .health')).to_have_text(["✕ 1 critical", "○ 1 no checks"])
            expect(page.locator('tr[data-service="cache"] .health')).to_have_text(["○ 1 no checks"])
            expect(page.locator('tr[data-service="api"] .health')).to_have_text(["◆ 1 maintenance"])
            shot(page, "services")
            page.get_by_label("Health").select_option("critical")
            expect(rows).to_have_count(1)
            page.get_by_label("Health").select_option("")
            page.get_by_label("Search by name").fill("we")
            expect(rows).to_have_count(1)
            expect(page.locator("#service-count")).to_have_text("1 of 4 services shown")
            page.get_by_label("Search by name").fill("")

            page.get_by_role("link", name="view web", exact=True).click()
            expect(page).to_have_url(f"{a.http_url}/ui/services/web")
            expect(page.locator("h1 .health")).to_have_text("! warning")
            second = page.locator('section[data-instance="web-2"]')
            expect(second.locator("[data-node]")).to_have_text("n2")
            expect(second.locator("[data-address]")).to_have_text("10.0.1.2:8081")  # the service's own address
            expect(page.locator('section[data-instance="web-1"] [data-address]')).to_have_text("10.0.0.1:8080")
            check = second.locator('tr[data-check="web-2-http"]')
            expect(check).to_have_attribute("data-status", "warning")
            expect(check.locator("pre.output")).to_have_text("HTTP GET /health: 200 OK in 900 ms (slow)")
            expect(second.locator(".tag")).to_have_text(["v2"])

            # the first instance's check fails: both instance and service turn critical, live
            failing = page.locator('section[data-instance="web-1"]')
            expect(failing).to_have_attribute("data-health", "passing")
            started = time.monotonic()
            web1 = {"ID": "web-1", "Service": "web", "Tags": ["v1", "blue"], "Port": 8080}
            register(
                api,
                "n1",
                "10.0.0.1",
                web1,
                http_check("web-1", "critical", "dial tcp 10.0.0.1:8080: connection refused"),
            )
            expect(failing).to_have_attribute("data-health", "critical")
            shown = time.monotonic() - started
            expect(failing.locator("pre.output")).to_have_text("dial tcp 10.0.0.1:8080: connection refused")
            expect(page.locator("h1 .health")).to_have_text("✕ critical")
            shot(page, "service-detail")
            page.get_by_role("link", name="All services").click()
            expect(web).to_have_attribute("data-health", "critical")  # worst of its instances

            # a node-level check counts for every instance on the node
            page.get_by_role("link", name="view db", exact=True).click()
            node_check = page.locator('section[data-instance="db-2"] tr[data-check="serfHealth"]')
            expect(node_check.locator("td").first).to_have_text("The whole node")
            expect(page.locator('section[data-instance="db-1"]')).to_contain_text("This instance has no health checks.")
        print(f"failing check -> critical on the open page: {shown * 1000:.0f} ms")  # noqa: T201
        assert shown < 2
        assert still_same(page)
        context.close()
        watch.check()


BLOCKING_EXPORTS = re.compile(r"/v1/exported-services\?")


class Hold:
    """Keeps the console's blocking reads unanswered while `on` (a page that has not heard of a change
    yet), and lets them through afterwards; plain reads always go through."""

    def __init__(self) -> None:
        self.on = False
        self.held: list[Route] = []

    def __call__(self, route: Route) -> None:
        if self.on and "index=" in route.request.url:
            self.held.append(route)
            return
        route.continue_()

    def release(self) -> None:
        from playwright.sync_api import Error

        self.on = False
        for route in self.held:
            with contextlib.suppress(Error):  # the page aborted that read itself (its refresh after a write)
                route.continue_()
        self.held.clear()


def test_the_exports_screen_edits_the_entry_with_compare_and_set(browser: Browser, tmp_path: Path) -> None:
    """Add exports (a service, the wildcard), see them resolved and in /v1/exported-services, the server's 400
    shown as sent, a stale page's write refused by CAS and nothing lost, and remove an export."""
    from playwright.sync_api import expect

    with running_cluster(tmp_path / "a") as a:
        watch = Watch({host_of(a.http_url)}, expected={400, 404})  # a refused entry; no entry yet
        context = new_context(browser, watch, [a])
        page = context.new_page()
        hold = Hold()
        page.route(BLOCKING_EXPORTS, hold)
        with api_client(a) as api:
            register(api, "n1", "10.0.0.1", {"ID": "web-1", "Service": "web"}, http_check("web-1", "passing", "ok"))
            register(api, "n1", "10.0.0.1", {"ID": "db-1", "Service": "db"})
            page.goto(f"{a.http_url}/ui/exports")
            expect(page.locator('[data-entry="none"]')).to_be_visible()
            expect(page.locator("#exports-resolved [data-empty]")).to_be_visible()

            page.get_by_label("Service", exact=True).fill("web")
            page.get_by_label("Consumer peer").fill("east")
            page.get_by_role("button", name="Add export").click()
            expect(page.locator("#export-result")).to_have_text("web is now exported to east.")
            expect(page.locator('tr[data-exported="web"] .tag')).to_have_text(["east"])
            assert api.get("/v1/exported-services").json() == [{"Service": "web", "Consumers": {"Peers": ["east"]}}]

            hold.on = True  # from now on the page's blocking reads wait: it learns only from its own writes
            page.get_by_label("Service", exact=True).fill("*")
            page.get_by_label("Consumer peer").fill("monitoring")
            page.get_by_role("button", name="Add export").click()
            expect(page.locator('tr[data-item="*"] th')).to_have_text("* every service with instances (wildcard)")
            expect(page.locator('tr[data-exported="db"] .tag')).to_have_text(["monitoring (through *)"])
            expect(page.locator('tr[data-exported="web"] .tag')).to_have_text(["east", "monitoring (through *)"])
            assert api.get("/v1/exported-services").json() == [
                {"Service": "db", "Consumers": {"Peers": ["monitoring"]}},
                {"Service": "web", "Consumers": {"Peers": ["east", "monitoring"]}},
            ]

            # the server's rule, in its words (the form checks nothing itself)
            page.get_by_label("Service", exact=True).fill("db")
            page.get_by_label("Consumer peer").fill("*")
            page.get_by_role("button", name="Add export").click()
            alert = page.locator("#export-result").get_by_role("alert")
            expect(alert).to_have_text(
                "Adding an export failed (400):Services[2].Consumers[0]: exporting to all peers (wildcard) is not supported"
            )
            shot(page, "exports")

            # a write the page has not seen yet: its next write is refused by CAS, nothing is lost
            entry = api.get("/v1/config/exported-services/default").json()
            changed = {**entry, "Services": [*entry["Services"], {"Name": "db", "Consumers": [{"Peer": "west"}]}]}
            assert api.put("/v1/config", params={"cas": entry["ModifyIndex"]}, json=changed).json() is True
            page.get_by_label("Consumer peer").fill("east")
            page.get_by_role("button", name="Add export").click()
            expect(alert).to_contain_text("Nothing was saved: adding the export was refused by compare-and-set.")
            hold.release()
            expect(page.locator('tr[data-item="db"]')).to_contain_text("west")  # the page shows the current entry
            kept = api.get("/v1/config/exported-services/default").json()["Services"]
            assert {"Name": "db", "Consumers": [{"Peer": "west"}]} in kept
            page.get_by_role("button", name="Add export").click()  # again, now on the current entry
            expect(page.locator("#export-result")).to_have_text("db is now exported to east.")

            # remove one consumer, confirmed in a dialog
            page.get_by_role("button", name="Remove the export of web to east").click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
            dialog.get_by_role("button", name="Stop exporting").click()
            expect(page.get_by_role("dialog")).to_have_count(0)
            expect(page.locator('tr[data-item="web"]')).to_have_count(0)  # no consumer left: the item goes
            expect(page.locator('tr[data-exported="web"] .tag')).to_have_text(["monitoring (through *)"])
            resolved = {s["Service"]: s["Consumers"]["Peers"] for s in api.get("/v1/exported-services").json()}
            assert resolved == {"db": ["east", "monitoring", "west"], "web": ["monitoring"]}
        page.unroute(BLOCKING_EXPORTS)
        context.close()
        watch.check()


def test_an_export_made_on_one_console_appears_on_the_peers_services_page(browser: Browser, tmp_path: Path) -> None:
    """A exports web to B through its console; B's services page (that peer, and every peer) shows it with
    health, both peering pages list it, a failing check on A reaches B live, the un-export removes it; then
    axe-core checks the new screens."""
    from playwright.sync_api import expect

    with ExitStack() as stack:
        a = stack.enter_context(running_cluster(tmp_path / "a", *FAST, "--datacenter", "dc1"))
        b = stack.enter_context(running_cluster(tmp_path / "b", *FAST, "--datacenter", "dc2"))
        peer_clusters(a, "cluster-b", b, "cluster-a")
        watch = Watch({host_of(a.http_url), host_of(b.http_url)}, expected={404})  # A has no entry at first
        context = new_context(browser, watch, [a, b])
        a_exports, b_services, b_peering = context.new_page(), context.new_page(), context.new_page()
        with api_client(a) as api_a, api_client(b) as api_b:
            web1 = {"ID": "web-1", "Service": "web", "Tags": ["v1"], "Port": 8080}
            register(api_a, "n1", "10.0.0.1", web1, http_check("web-1", "passing", "ok"))
            front(b_services).goto(f"{b.http_url}/ui/services?peer=cluster-a")
            expect(b_services.get_by_label("Source")).to_have_value("peer:cluster-a")
            expect(
                b_services.get_by_role("heading", name='No services are imported from peer "cluster-a".')
            ).to_be_visible()
            front(b_peering).goto(f"{b.http_url}/ui/peerings/cluster-a")
            expect(b_peering.locator("h1 .badge")).to_have_text("ACTIVE")
            mark(b_services)
            mark(b_peering)

            front(a_exports).goto(f"{a.http_url}/ui/exports")
            a_exports.get_by_label("Service", exact=True).fill("web")
            a_exports.get_by_label("Consumer peer").fill("cluster-b")
            row = b_services.locator('tr[data-service="web"]')
            started = time.monotonic()
            a_exports.get_by_role("button", name="Add export").click()
            expect(row).to_have_attribute("data-health", "passing")  # replicated, live, with its health
            arrived = time.monotonic() - started
            expect(a_exports.locator("#export-result")).to_have_text("web is now exported to cluster-b.")
            expect(row.locator(".imported-label")).to_have_text("Imported from cluster-a")
            expect(row.locator("td.num")).to_have_text("1")
            assert api_b.get("/v1/imported-services").json() == [{"Service": "web", "SourcePeer": "cluster-a"}]
            shot(front(b_services), "services-imported")
            expect(b_peering.get_by_role("tab", name="Imported services (1)")).to_be_visible()
            expect(b_peering.locator('[data-services="imported"] a')).to_have_text(["web"])
            front(b_peering).get_by_role("tab", name="Imported services (1)").click()
            shot(b_peering, "peering-imported")

            # a failing check on A reaches B's page as the instance's overall check
            register(api_a, "n1", "10.0.0.1", web1, http_check("web-1", "critical", "connection refused"))
            expect(row).to_have_attribute("data-health", "critical")
            front(b_services).get_by_role("link", name="view web from cluster-a").click()
            expect(b_services).to_have_url(f"{b.http_url}/ui/services/web?peer=cluster-a")
            overall = b_services.locator('tr[data-check="web-1:overall-check"]')
            expect(overall).to_have_attribute("data-status", "critical")
            expect(b_services.locator(".page-head .imported-label")).to_have_text("Imported from cluster-a")
            expect(b_services.locator(".summary")).to_contain_text("dc1")  # the exporter's datacenter
            b_services.get_by_role("link", name="Services imported from cluster-a").click()
            b_services.get_by_label("Source").select_option("imported")  # every peer's imports, with the source
            expect(b_services).to_have_url(f"{b.http_url}/ui/services?imported")
            expect(b_services.locator('tr[data-service="web"][data-peer="cluster-a"]')).to_have_attribute(
                "data-health", "critical"
            )
            a_peering = context.new_page()
            front(a_peering).goto(f"{a.http_url}/ui/peerings/cluster-b?tab=exported")
            expect(a_peering.locator('[data-services="exported"] a')).to_have_text(["web"])

            # the un-export reaches B
            front(a_exports).get_by_role("button", name="Remove the export of web to cluster-b").click()
            a_exports.get_by_role("dialog").get_by_role("button", name="Stop exporting").click()
            expect(b_services.locator('tr[data-service="web"]')).to_have_count(0)
            expect(b_peering.get_by_role("tab", name="Imported services (0)")).to_be_visible()
            assert api_b.get("/v1/imported-services").json() == []
            assert still_same(b_peering)
        context.close()
        assert arrived < 2  # SPEC §14: within a second of the change, plus the page's own reads
        print(f"click on A's Add export -> row on B's services page with health: {arrived * 1000:.0f} ms")  # noqa: T201
        watch.check()

        violations = _axe_new_screens(browser, a, b)
    serious = {name: [v for v in found if v["impact"] in ("serious", "critical")] for name, found in violations.items()}
    print("axe-core violations by screen:", {n: [(v["id"], v["impact"]) for v in f] for n, f in violations.items()})  # noqa: T201
    assert serious == {name: [] for name in violations}


def _axe_new_screens(browser: Browser, a: Any, b: Any) -> dict[str, list[dict[str, Any]]]:
    """axe-core on the services, service, exports screens and the remove dialog (a context that bypasses
    the CSP, to inject axe)."""
    from playwright.sync_api import expect

    script = axe_script()
    with api_client(a) as api:
        body = {
            "Kind": "exported-services",
            "Name": "default",
            "Services": [{"Name": "*", "Consumers": [{"Peer": "cluster-b"}]}],
        }
        api.put("/v1/config", json=body).raise_for_status()
    watch = Watch({host_of(a.http_url), host_of(b.http_url)})
    context = new_context(browser, watch, [a, b], bypass_csp=True)
    page = context.new_page()
    found: dict[str, list[dict[str, Any]]] = {}
    page.goto(f"{a.http_url}/ui/services")
    expect(page.locator('tr[data-service="web"]')).to_have_attribute("data-health", "critical")
    found["services"] = axe_violations(page, script)
    page.goto(f"{a.http_url}/ui/services/web")
    expect(page.locator("section[data-instance]")).to_have_count(1)
    found["service"] = axe_violations(page, script)
    page.goto(f"{b.http_url}/ui/services?imported")
    expect(page.locator('tr[data-service="web"]')).to_have_attribute("data-health", "critical")
    found["services, imported"] = axe_violations(page, script)
    page.goto(f"{a.http_url}/ui/exports")
    expect(page.locator('tr[data-exported="web"]')).to_be_visible()
    found["exports"] = axe_violations(page, script)
    page.get_by_role("button", name="Remove the export of every service to cluster-b").click()
    found["exports, remove dialog"] = axe_violations(page, script)
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)
    context.close()
    watch.check()
    return found


MANAGEMENT = "5b0f31c4-98a5-4f61-9c8e-3f3b3c2d6a11"
ACL_ON = ("--acl-enabled", "--acl-default-policy", "deny", "--acl-initial-management-token", MANAGEMENT)
WEB_READER = 'service "web" { policy = "read" }\nnode_prefix "" { policy = "read" }\nmesh = "read"'


def test_with_acls_the_new_screens_say_what_is_hidden_or_missing(browser: Browser, tmp_path: Path) -> None:
    """ACLs on (default deny): a token that may read only `web` sees it and a note that others are hidden; the
    imported lists and a write to the entry name the permission that is missing; management may add."""
    from playwright.sync_api import expect

    with running_cluster(tmp_path / "a", *ACL_ON) as a:
        with api_client(a, MANAGEMENT) as api:
            register(api, "n1", "10.0.0.1", {"ID": "web-1", "Service": "web"}, http_check("web-1", "passing", "ok"))
            register(api, "n1", "10.0.0.1", {"ID": "db-1", "Service": "db"})
            api.put("/v1/acl/policy", json={"Name": "web-reader", "Rules": WEB_READER}).raise_for_status()
            body = {"Description": "console web reader", "Policies": [{"Name": "web-reader"}]}
            reader = api.put("/v1/acl/token", json=body).raise_for_status().json()["SecretID"]
        watch = Watch({host_of(a.http_url)}, expected={403, 404})
        context = new_context(browser, watch, [a])
        page = context.new_page()

        page.goto(f"{a.http_url}/ui/services")  # no token: the anonymous token sees nothing, and is told so
        expect(page.locator('[data-filtered="anonymous"]')).to_contain_text("no token is set")
        expect(page.locator("tr[data-service]")).to_have_count(0)
        set_token(page, a, reader)
        page.get_by_role("link", name="Services").click()
        expect(page.locator("tr[data-service]")).to_have_count(1)
        expect(page.locator('tr[data-service="web"]')).to_have_attribute("data-health", "passing")
        hidden = page.locator('[data-filtered="token"]')  # db is hidden, not absent: the server said so
        expect(hidden).to_contain_text("Some services are not shown: the ACL token in use may not read them")

        page.goto(f"{a.http_url}/ui/services?peer=cluster-b")  # imported rows need more than service:read on web
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("Permission denied: listing services needs service:write on any service.")
        expect(alert).to_contain_text('service_prefix "" { policy = "read" } with node_prefix "" { policy = "read" }')

        page.goto(f"{a.http_url}/ui/exports")  # mesh = "read": the exports are shown, a change is refused
        expect(page.locator('[data-entry="none"]')).to_be_visible()
        page.get_by_label("Service", exact=True).fill("web")
        page.get_by_label("Consumer peer").fill("east")
        page.get_by_role("button", name="Add export").click()
        alert = page.locator("#export-result").get_by_role("alert")
        expect(alert).to_contain_text("Permission denied: adding an export needs mesh:write.")
        expect(alert).to_contain_text('mesh = "write"')
        shot(page, "exports-denied")

        set_token(page, a, MANAGEMENT)
        page.goto(f"{a.http_url}/ui/exports")
        page.get_by_label("Service", exact=True).fill("web")
        page.get_by_label("Consumer peer").fill("east")
        page.get_by_role("button", name="Add export").click()
        expect(page.locator("#export-result")).to_have_text("web is now exported to east.")
        context.close()
        watch.check()


HEALTH_RULES = """async () => {
  const { instanceStatus, summarize, worst } = await import("/ui/assets/views/health.js");
  const { ApiError } = await import("/ui/assets/api.js");
  const check = (Status, CheckID = "c", ServiceID = "s") => ({ Status, CheckID, ServiceID });
  const entry = (...checks) => ({ Checks: checks });
  const named = new ApiError(403, "Permission denied: token with AccessorID 'x' lacks permission 'service:read' on \\"web\\"");
  const any = new ApiError(403, "Permission denied: token with AccessorID 'x' lacks permission 'service:write' on any service");
  return {
    one: [
      entry(),
      entry(check("passing")),
      entry(check("passing"), check("warning")),
      entry(check("warning"), check("critical")),
      entry(check("critical"), check("critical", "_service_maintenance:s")),
      entry(check("passing"), check("critical", "_node_maintenance", "")),
      entry(check("passing", "_service_maintenance:s")),
      entry(check("bogus")),
    ].map(instanceStatus),
    summary: summarize([entry(check("passing")), entry(check("warning")), entry(check("warning")), entry()]),
    empty: summarize([]),
    worst: worst(["passing", "none"]),
    named: [named.permission, named.resourceName, named.anyService],
    any: [any.permission, any.resourceName, any.anyService],
  };
}"""


def test_the_pages_own_health_rules(browser: Browser, tmp_path: Path) -> None:
    """The module the pages run, called in the page: Consul's precedence (maintenance > critical > warning >
    passing, a maintenance check counts even when passing, an unknown status is critical), the per-status
    counts, and the named 403s parsed."""
    with running_cluster(tmp_path / "a") as a:
        watch = Watch({host_of(a.http_url)})
        context = new_context(browser, watch, [a])
        page = context.new_page()
        page.goto(f"{a.http_url}/ui/settings")
        found = page.evaluate(HEALTH_RULES)
        context.close()
    assert found["one"] == [
        "none",
        "passing",
        "warning",
        "critical",
        "maintenance",
        "maintenance",
        "maintenance",
        "critical",
    ]
    assert found["summary"] == {
        "total": 4,
        "counts": {"maintenance": 0, "critical": 0, "warning": 2, "passing": 1, "none": 1},
        "overall": "warning",
    }
    assert found["empty"] == {
        "total": 0,
        "counts": {"maintenance": 0, "critical": 0, "warning": 0, "passing": 0, "none": 0},
        "overall": "none",
    }
    assert found["worst"] == "passing"
    assert found["named"] == ["service:read", "web", False]
    assert found["any"] == ["service:write", None, True]
    watch.check()

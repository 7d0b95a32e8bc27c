// Package interop drives real `peering serve` processes through HashiCorp's
// official Go client, github.com/hashicorp/consul/api, and nothing else: if
// the client works unchanged against the service, SPEC §1 and §17 hold.
//
// The tests live in *_test.go files; this file only names the package. Each
// test starts the clusters it needs (or shares one started once by TestMain),
// with the Python interpreter named by PEERING_PYTHON (default
// ../../.venv/bin/python, the repository's venv), and stops every process it
// started by its PID.
package interop

package interop

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestCatalogWithTheGoClient: register through the catalog and the agent, read back through catalog and
// health (tags, passing, blocking), drive a TTL check and maintenance, deregister: the official client
// decodes every answer.
func TestCatalogWithTheGoClient(t *testing.T) {
	t.Parallel()
	client := newCluster(t, "--node-name", "go-node").Client(t, "")
	reg := &api.CatalogRegistration{
		Node: "n1", Address: "10.0.0.1",
		Service: &api.AgentService{ID: "web-1", Service: "web", Tags: []string{"v1"}, Port: 8080},
		Checks:  api.HealthChecks{{CheckID: "web-1-http", Name: "http", Status: api.HealthPassing, ServiceID: "web-1"}},
	}
	if _, err := client.Catalog().Register(reg, nil); err != nil {
		t.Fatal(err)
	}
	services, meta, err := client.Catalog().Services(nil)
	if err != nil || len(services["web"]) != 1 || meta.LastIndex == 0 {
		t.Fatalf("Services: %v %v %v", services, meta, err)
	}
	nodes, _, err := client.Catalog().Service("web", "v1", nil)
	if err != nil || len(nodes) != 1 || nodes[0].ServicePort != 8080 || nodes[0].ServiceWeights.Passing != 1 {
		t.Fatalf("Service: %+v %v", nodes, err)
	}
	node, _, err := client.Catalog().Node("n1", nil)
	if err != nil || node == nil || node.Services["web-1"] == nil {
		t.Fatalf("Node: %+v %v", node, err)
	}
	missing, _, err := client.Catalog().Node("nope", nil)
	if err != nil || missing != nil {
		t.Fatalf("Node(nope): %+v %v", missing, err)
	}
	entries, meta, err := client.Health().Service("web", "", true, nil)
	if err != nil || len(entries) != 1 || entries[0].Checks.AggregatedStatus() != api.HealthPassing {
		t.Fatalf("Health: %+v %v", entries, err)
	}
	imported, _, err := client.Health().Service("web", "", false, &api.QueryOptions{Peer: "east"})
	if err != nil || len(imported) != 0 {
		t.Fatalf("Health ?peer: %+v %v", imported, err)
	}

	// the agent: a TTL check, renewed, updated, in maintenance
	agentReg := &api.AgentServiceRegistration{ID: "api-1", Name: "api", Port: 9000,
		Check: &api.AgentServiceCheck{TTL: "30s", Status: api.HealthPassing}}
	if err := client.Agent().ServiceRegister(agentReg); err != nil {
		t.Fatal(err)
	}
	if err := client.Agent().ServiceRegisterOpts(agentReg, api.ServiceRegisterOpts{ReplaceExistingChecks: true}); err != nil {
		t.Fatal(err)
	}
	mine, err := client.Agent().Services()
	if err != nil || mine["api-1"] == nil || mine["api-1"].Port != 9000 {
		t.Fatalf("Agent.Services: %+v %v", mine, err)
	}
	if err := client.Agent().WarnTTL("service:api-1", "slow"); err != nil {
		t.Fatal(err)
	}
	if err := client.Agent().UpdateTTL("service:api-1", "fine", "pass"); err != nil {
		t.Fatal(err)
	}
	checks, err := client.Agent().Checks()
	if err != nil || checks["service:api-1"] == nil || checks["service:api-1"].Status != api.HealthPassing || checks["service:api-1"].Output != "fine" {
		t.Fatalf("Agent.Checks: %+v %v", checks, err)
	}
	_, meta, err = client.Health().Service("api", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	// a blocking query woken by maintenance
	type answer struct {
		entries []*api.ServiceEntry
		meta    *api.QueryMeta
		err     error
	}
	done := make(chan answer, 1)
	go func() {
		e, m, err := client.Health().Service("api", "", false, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 30 * time.Second})
		done <- answer{e, m, err}
	}()
	if err := client.Agent().EnableServiceMaintenance("api-1", "patching"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if got.err != nil || got.meta.LastIndex <= meta.LastIndex || got.entries[0].Checks.AggregatedStatus() != api.HealthMaint {
			t.Fatalf("woken: %+v %v", got.entries, got.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query was not woken")
	}
	if err := client.Agent().DisableServiceMaintenance("api-1"); err != nil {
		t.Fatal(err)
	}
	if err := client.Agent().ServiceDeregister("api-1"); err != nil {
		t.Fatal(err)
	}
	err = client.Agent().PassTTL("service:api-1", "")
	wantStatus(t, err, 404, `Unknown check ID "service:api-1". Ensure that the check ID is passed, not the check name.`)
	if _, err := client.Catalog().Deregister(&api.CatalogDeregistration{Node: "n1", ServiceID: "web-1"}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = client.Catalog().Register(&api.CatalogRegistration{Node: "n1", Address: "a", Service: &api.AgentService{Service: "x", PeerName: "east"}}, nil)
	wantStatus(t, err, 400, "cannot register requests with PeerName in them")
}

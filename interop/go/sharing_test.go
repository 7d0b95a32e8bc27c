package interop

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// awaitImported waits, with blocking health reads on the importer (QueryOptions.Peer), until `want`
// instances of `service` imported through `peer` are there, and answers them.
func awaitImported(t testing.TB, client *api.Client, service, peer string, want int) []*api.ServiceEntry {
	t.Helper()
	deadline := time.Now().Add(awaitTimeout)
	var index uint64
	for {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			t.Fatalf("%d instances of %s imported through %s: not within %s", want, service, peer, awaitTimeout)
		}
		entries, meta, err := client.Health().Service(service, "", false,
			&api.QueryOptions{Peer: peer, WaitIndex: index, WaitTime: min(remaining, time.Second)})
		if err != nil {
			t.Fatalf("Health().Service(%s, Peer %s): %v", service, peer, err)
		}
		if len(entries) == want {
			return entries
		}
		index = meta.LastIndex
	}
}

// TestSharingAServiceWithTheGoClient: the exported-services entry written, read and deleted through
// ConfigEntries(), the resolved exports through ExportedServices(), and the peer's imported instances
// read through Health().Service with QueryOptions.Peer, ImportedServices() and the peering's StreamStatus.
func TestSharingAServiceWithTheGoClient(t *testing.T) {
	t.Parallel()
	a := newCluster(t, "--datacenter", "dc-a", "--heartbeat-interval", "1")
	b := newCluster(t, "--datacenter", "dc-b", "--heartbeat-interval", "1")
	ca, cb := a.Client(t, ""), b.Client(t, "")
	ctx := ctxFor(t, 60*time.Second)

	tok, _, err := ca.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "cluster-b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cb.Peerings().Establish(ctx, api.PeeringEstablishRequest{PeerName: "cluster-a", PeeringToken: tok.PeeringToken}, nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"web-1", "web-2"} {
		reg := &api.CatalogRegistration{
			Node: "node-" + id, Address: "10.0.0.1",
			Service: &api.AgentService{ID: id, Service: "web", Port: 8080},
			Checks:  api.HealthChecks{{CheckID: id + "-check", Name: "check", Status: api.HealthPassing, ServiceID: id}},
		}
		if _, err := ca.Catalog().Register(reg, nil); err != nil {
			t.Fatal(err)
		}
	}

	entry := &api.ExportedServicesConfigEntry{
		Name:     "default",
		Services: []api.ExportedService{{Name: "web", Consumers: []api.ServiceConsumer{{Peer: "cluster-b"}}}},
	}
	if ok, _, err := ca.ConfigEntries().CAS(entry, 0, nil); err != nil || !ok {
		t.Fatalf("CAS create: %v %v", ok, err)
	}
	if ok, _, err := ca.ConfigEntries().CAS(entry, 0, nil); err != nil || ok {
		t.Fatalf("CAS 0 on an existing entry must be refused: %v %v", ok, err)
	}
	got, _, err := ca.ConfigEntries().Get(api.ExportedServices, "default", nil)
	if err != nil {
		t.Fatal(err)
	}
	stored, isExports := got.(*api.ExportedServicesConfigEntry)
	if !isExports || len(stored.Services) != 1 || stored.Services[0].Consumers[0].Peer != "cluster-b" || stored.ModifyIndex == 0 {
		t.Fatalf("Get: %#v", got)
	}
	resolved, _, err := ca.ExportedServices(nil)
	if err != nil || len(resolved) != 1 || resolved[0].Service != "web" || !slices.Equal(resolved[0].Consumers.Peers, []string{"cluster-b"}) {
		t.Fatalf("ExportedServices: %+v %v", resolved, err)
	}

	entries := awaitImported(t, cb, "web", "cluster-a", 2)
	for _, e := range entries {
		if e.Node.PeerName != "cluster-a" || e.Service.PeerName != "cluster-a" || e.Node.Datacenter != "dc-a" {
			t.Fatalf("imported entry: node %+v service %+v", e.Node, e.Service)
		}
		if len(e.Checks) != 1 || e.Checks[0].CheckID != e.Service.ID+":overall-check" || e.Checks[0].Status != api.HealthPassing || e.Checks[0].PeerName != "cluster-a" {
			t.Fatalf("imported checks: %+v", e.Checks)
		}
	}
	local, _, err := cb.Health().Service("web", "", false, nil)
	if err != nil || len(local) != 0 {
		t.Fatalf("B's local catalog must not hold the import: %v %v", local, err)
	}
	imported, _, err := cb.ImportedServices(nil)
	if err != nil || len(imported) != 1 || imported[0].Service != "web" || imported[0].SourcePeer != "cluster-a" {
		t.Fatalf("ImportedServices: %+v %v", imported, err)
	}
	awaitPeering(t, ca, "cluster-b", "", "A lists web as exported", func(p *api.Peering) bool {
		return p != nil && slices.Equal(p.StreamStatus.ExportedServices, []string{"web"})
	})
	awaitPeering(t, cb, "cluster-a", "", "B lists web as imported", func(p *api.Peering) bool {
		return p != nil && slices.Equal(p.StreamStatus.ImportedServices, []string{"web"})
	})

	if _, err := ca.ConfigEntries().Delete(api.ExportedServices, "default", nil); err != nil {
		t.Fatal(err)
	}
	awaitImported(t, cb, "web", "cluster-a", 0)
}

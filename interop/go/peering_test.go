package interop

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestStatusLeader: Status().Leader() answers the cluster's peering address once it is ready.
func TestStatusLeader(t *testing.T) {
	t.Parallel()
	a := clusterA(t)
	leader, err := a.Client(t, "").Status().Leader()
	if err != nil {
		t.Fatal(err)
	}
	if leader != a.AdvertiseAddr && leader != a.PeeringAddr {
		t.Fatalf("Leader() = %q, want the peering address %q", leader, a.PeeringAddr)
	}
}

// TestPeeringLifecycle: token, establish, read and list on both sides, delete, through the client.
func TestPeeringLifecycle(t *testing.T) {
	t.Parallel()
	a, b := clusterA(t), clusterB(t)
	ca, cb := a.Client(t, ""), b.Client(t, "")
	ctx := ctxFor(t, 60*time.Second)
	const part = "lifecycle"

	tok, _, err := ca.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{
		PeerName: "cluster-b", Partition: part, Meta: map[string]string{"env": "test"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok.PeeringToken == "" {
		t.Fatal("empty PeeringToken")
	}
	first, meta, err := ca.Peerings().Read(ctx, "cluster-b", &api.QueryOptions{Partition: part})
	if err != nil || first == nil {
		t.Fatalf("Read after GenerateToken: %v, %v", first, err)
	}
	if first.State != "INITIAL" || first.Partition != part || first.Meta["env"] != "test" || first.ID == "" {
		t.Fatalf("new peering: %s", describe(first))
	}
	if first.CreateIndex == 0 || first.CreateIndex != first.ModifyIndex || meta.LastIndex != first.ModifyIndex {
		t.Fatalf("indexes: Create %d Modify %d X-Consul-Index %d", first.CreateIndex, first.ModifyIndex, meta.LastIndex)
	}
	if !meta.KnownLeader {
		t.Fatal("X-Consul-KnownLeader is not true")
	}

	// Generating again keeps the ID and bumps ModifyIndex.
	tok, _, err = ca.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "cluster-b", Partition: part}, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := ca.Peerings().Read(ctx, "cluster-b", &api.QueryOptions{Partition: part})
	if err != nil || again == nil {
		t.Fatalf("Read after the second GenerateToken: %v, %v", again, err)
	}
	if again.ID != first.ID || again.ModifyIndex <= first.ModifyIndex || again.CreateIndex != first.CreateIndex {
		t.Fatalf("regenerated: ID %s→%s ModifyIndex %d→%d", first.ID, again.ID, first.ModifyIndex, again.ModifyIndex)
	}

	res, _, err := cb.Peerings().Establish(ctx, api.PeeringEstablishRequest{
		PeerName: "cluster-a", PeeringToken: tok.PeeringToken, Partition: part, Meta: map[string]string{"side": "b"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res == nil {
		t.Fatal("Establish answered no response")
	}

	// Establish returns once both sides are ACTIVE.
	dialer, _, err := cb.Peerings().Read(ctx, "cluster-a", &api.QueryOptions{Partition: part})
	if err != nil || dialer == nil {
		t.Fatalf("Read on the dialer: %v, %v", dialer, err)
	}
	if dialer.State != api.PeeringStateActive || dialer.PeerID != first.ID || dialer.Meta["side"] != "b" {
		t.Fatalf("dialer side: %s", describe(dialer))
	}
	if dialer.PeerServerName != "server.dc1.consul" || len(dialer.PeerCAPems) == 0 ||
		!slices.Contains(dialer.PeerServerAddresses, a.AdvertiseAddr) {
		t.Fatalf("dialer's view of the acceptor: name %q, %d CA PEMs, addresses %v (want %s)",
			dialer.PeerServerName, len(dialer.PeerCAPems), dialer.PeerServerAddresses, a.AdvertiseAddr)
	}
	if dialer.Remote.Datacenter != "dc1" || dialer.Remote.Partition != part {
		t.Fatalf("dialer's Remote: %+v", dialer.Remote)
	}
	acceptor, _, err := ca.Peerings().Read(ctx, "cluster-b", &api.QueryOptions{Partition: part})
	if err != nil || acceptor == nil {
		t.Fatalf("Read on the acceptor: %v, %v", acceptor, err)
	}
	if acceptor.State != api.PeeringStateActive || acceptor.Remote.Datacenter != "dc2" || acceptor.Remote.Partition != part {
		t.Fatalf("acceptor side: %s", describe(acceptor))
	}
	// PeerID, PeerCAPems, PeerServerName and PeerServerAddresses are the dialer's only (SPEC §3.6).
	if acceptor.PeerID != "" || acceptor.PeerServerName != "" || len(acceptor.PeerCAPems) != 0 || len(acceptor.PeerServerAddresses) != 0 {
		t.Fatalf("acceptor shows dialer-only fields: %s", describe(acceptor))
	}

	// Heartbeats flow (every 0.2 s): both sides record one.
	awaitPeering(t, cb, "cluster-a", part, "dialer's LastHeartbeat", func(p *api.Peering) bool {
		return p != nil && p.StreamStatus.LastHeartbeat != nil
	})
	awaitPeering(t, ca, "cluster-b", part, "acceptor's LastHeartbeat", func(p *api.Peering) bool {
		return p != nil && p.StreamStatus.LastHeartbeat != nil
	})

	list, meta, err := ca.Peerings().List(ctx, &api.QueryOptions{Partition: part})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "cluster-b" || list[0].State != api.PeeringStateActive {
		t.Fatalf("List in %s: %d peerings: %v", part, len(list), list)
	}
	if meta.LastIndex < list[0].ModifyIndex {
		t.Fatalf("List X-Consul-Index %d below the listed ModifyIndex %d", meta.LastIndex, list[0].ModifyIndex)
	}

	// Delete on the dialer: the acceptor turns TERMINATED (no DeletedAt), the dialer's record goes.
	if _, err := cb.Peerings().Delete(ctx, "cluster-a", &api.WriteOptions{Partition: part}); err != nil {
		t.Fatal(err)
	}
	gone, _, err := cb.Peerings().Read(ctx, "cluster-a", &api.QueryOptions{Partition: part})
	if err != nil {
		t.Fatal(err)
	}
	if gone != nil && (gone.State != api.PeeringStateTerminated || gone.DeletedAt == nil) {
		t.Fatalf("right after Delete: %s", describe(gone))
	}
	terminated := awaitPeering(t, ca, "cluster-b", part, "acceptor told of the deletion", func(p *api.Peering) bool {
		return p != nil && p.State == api.PeeringStateTerminated
	})
	if terminated.DeletedAt != nil {
		t.Fatalf("the told side has DeletedAt: %s", describe(terminated))
	}
	awaitPeering(t, cb, "cluster-a", part, "dialer's record removed", func(p *api.Peering) bool { return p == nil })

	if _, err := ca.Peerings().Delete(ctx, "cluster-b", &api.WriteOptions{Partition: part}); err != nil {
		t.Fatal(err)
	}
	awaitPeering(t, ca, "cluster-b", part, "acceptor's record removed", func(p *api.Peering) bool { return p == nil })
}

// TestPeeringPartitions: the body's Partition, QueryOptions/WriteOptions.Partition and the
// client's Config.Partition all select a partition, and partitions do not see each other.
func TestPeeringPartitions(t *testing.T) {
	t.Parallel()
	a := clusterA(t)
	client := a.Client(t, "")
	ctx := ctxFor(t, 30*time.Second)
	const name = "part-peer"

	if _, _, err := client.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: name, Partition: "team-a"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: name},
		&api.WriteOptions{Partition: "team-b"}); err != nil {
		t.Fatal(err)
	}

	inA, _, err := client.Peerings().Read(ctx, name, &api.QueryOptions{Partition: "team-a"})
	if err != nil || inA == nil || inA.Partition != "team-a" {
		t.Fatalf("team-a: %s, %v", describe(inA), err)
	}
	inB, _, err := client.Peerings().Read(ctx, name, &api.QueryOptions{Partition: "team-b"})
	if err != nil || inB == nil || inB.Partition != "team-b" {
		t.Fatalf("team-b: %s, %v", describe(inB), err)
	}
	if inA.ID == inB.ID {
		t.Fatalf("one ID %s for peerings in two partitions", inA.ID)
	}
	inDefault, _, err := client.Peerings().Read(ctx, name, nil)
	if err != nil || inDefault != nil {
		t.Fatalf("the default partition sees %s (err %v)", describe(inDefault), err)
	}

	// A client whose Config.Partition is team-b sends ?partition=team-b on every call.
	teamB := a.PartitionClient(t, "", "team-b")
	list, _, err := teamB.Peerings().List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != inB.ID {
		t.Fatalf("List with Config.Partition team-b: %v", list)
	}
	all, _, err := client.Peerings().List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		if p.Name == name {
			t.Fatalf("the default partition's list holds %s", describe(p))
		}
		if p.Partition != "default" {
			t.Fatalf("default list holds a peering of partition %q", p.Partition)
		}
	}

	if _, err := teamB.Peerings().Delete(ctx, name, nil); err != nil {
		t.Fatal(err)
	}
	awaitPeering(t, client, name, "team-b", "team-b's peering removed", func(p *api.Peering) bool { return p == nil })
	still, _, err := client.Peerings().Read(ctx, name, &api.QueryOptions{Partition: "team-a"})
	if err != nil || still == nil {
		t.Fatalf("deleting in team-b touched team-a: %s, %v", describe(still), err)
	}
}

// TestPeeringErrors: how the client surfaces the service's refusals.
func TestPeeringErrors(t *testing.T) {
	t.Parallel()
	a, b := clusterA(t), clusterB(t)
	ca, cb := a.Client(t, ""), b.Client(t, "")
	ctx := ctxFor(t, 30*time.Second)
	const part = "errors"

	t.Run("read of an unknown peering is nil without an error", func(t *testing.T) {
		p, meta, err := ca.Peerings().Read(ctx, "no-such-peer", &api.QueryOptions{Partition: part})
		if err != nil || p != nil {
			t.Fatalf("Read(unknown) = %s, %v; want nil, nil", describe(p), err)
		}
		if meta == nil || meta.LastIndex == 0 {
			t.Fatalf("Read(unknown) meta %+v: want X-Consul-Index >= 1", meta)
		}
	})

	t.Run("delete of an unknown peering succeeds", func(t *testing.T) {
		if _, err := ca.Peerings().Delete(ctx, "no-such-peer", &api.WriteOptions{Partition: part}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("invalid peer name is a 400 with the message", func(t *testing.T) {
		_, _, err := ca.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "Bad_Name"}, nil)
		wantStatus(t, err, 400, "Bad_Name is not a valid peer name: a valid peering name must consist of lower case "+
			"alphanumeric characters or '-', and must start and end with an alphanumeric character")
	})

	t.Run("invalid meta is a 400", func(t *testing.T) {
		_, _, err := ca.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{
			PeerName: "bad-meta", Partition: part, Meta: map[string]string{"consul-reserved": "x"},
		}, nil)
		se := statusError(t, err)
		if se.Code != 400 || !strings.HasPrefix(se.Body, "meta tags failed validation: ") {
			t.Fatalf("got %d %q", se.Code, se.Body)
		}
	})

	t.Run("a garbled token is a 400", func(t *testing.T) {
		_, _, err := cb.Peerings().Establish(ctx, api.PeeringEstablishRequest{
			PeerName: "garbled", PeeringToken: "not a token", Partition: part,
		}, nil)
		se := statusError(t, err)
		if se.Code != 400 || se.Body == "" {
			t.Fatalf("got %d %q", se.Code, se.Body)
		}
	})

	t.Run("a token of the same cluster is a 400", func(t *testing.T) {
		tok, _, err := ca.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "self-a", Partition: part}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = ca.Peerings().Establish(ctx, api.PeeringEstablishRequest{
			PeerName: "self-b", PeeringToken: tok.PeeringToken, Partition: part,
		}, nil)
		wantStatus(t, err, 400, "cannot create a peering within the same cluster")
	})

	t.Run("a superseded token is a 403 whose body the error carries", func(t *testing.T) {
		old, _, err := ca.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "superseded", Partition: part}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ca.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "superseded", Partition: part}, nil); err != nil {
			t.Fatal(err)
		}
		_, _, err = cb.Peerings().Establish(ctx, api.PeeringEstablishRequest{
			PeerName: "superseded", PeeringToken: old.PeeringToken, Partition: part,
		}, nil)
		const body = "a new peering token must be generated: invalid peering establishment secret"
		wantStatus(t, err, 403, body)
		if !strings.Contains(err.Error(), "403 ("+body+")") {
			t.Fatalf("Error() = %q", err.Error())
		}
		if p, _, err := cb.Peerings().Read(ctx, "superseded", &api.QueryOptions{Partition: part}); err != nil || p != nil {
			t.Fatalf("a refused establish left %s (err %v)", describe(p), err)
		}
	})

	t.Run("establish on a name this cluster generated a token for is a 400", func(t *testing.T) {
		tok, _, err := cb.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "from-b", Partition: part}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ca.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "expecting", Partition: part}, nil); err != nil {
			t.Fatal(err)
		}
		_, _, err = ca.Peerings().Establish(ctx, api.PeeringEstablishRequest{
			PeerName: "expecting", PeeringToken: tok.PeeringToken, Partition: part,
		}, nil)
		wantStatus(t, err, 400, `cannot create peering with name: "expecting"; there is an existing peering expecting to be dialed`)
	})
}

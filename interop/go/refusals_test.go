package interop

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestUnknownDatacenterRefused (issue 12 item 6): QueryOptions/WriteOptions.Datacenter
// naming another datacenter is refused with Consul's "No path to datacenter" (never a
// silent answer from this one, never a 500); naming this one works.
func TestUnknownDatacenterRefused(t *testing.T) {
	t.Parallel()
	a := clusterA(t)
	client := a.Client(t, "")
	ctx := ctxFor(t, 30*time.Second)
	const part, body = "dc-param", "No path to datacenter"
	refused := func(t *testing.T, err error) {
		t.Helper()
		if err == nil {
			t.Fatal("?dc=dc-nowhere answered 200")
		}
		se := statusError(t, err)
		if se.Code < 400 || se.Code >= 500 || se.Body != body {
			t.Fatalf("?dc=dc-nowhere: %d %q; want a 4xx %q", se.Code, se.Body, body)
		}
	}

	t.Run("List", func(t *testing.T) {
		_, _, err := client.Peerings().List(ctx, &api.QueryOptions{Datacenter: "dc-nowhere", Partition: part})
		refused(t, err)
	})
	t.Run("Read", func(t *testing.T) {
		_, _, err := client.Peerings().Read(ctx, "any", &api.QueryOptions{Datacenter: "dc-nowhere", Partition: part})
		refused(t, err)
	})
	t.Run("GenerateToken writes nothing", func(t *testing.T) {
		_, _, err := client.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "elsewhere", Partition: part},
			&api.WriteOptions{Datacenter: "dc-nowhere"})
		refused(t, err)
		p, _, err := client.Peerings().Read(ctx, "elsewhere", &api.QueryOptions{Partition: part})
		if err != nil || p != nil {
			t.Fatalf("a refused write left %s (err %v)", describe(p), err)
		}
	})
	t.Run("this datacenter works", func(t *testing.T) {
		if _, _, err := client.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "here", Partition: part},
			&api.WriteOptions{Datacenter: a.Datacenter}); err != nil {
			t.Fatal(err)
		}
		list, _, err := client.Peerings().List(ctx, &api.QueryOptions{Datacenter: a.Datacenter, Partition: part})
		if err != nil || len(list) != 1 {
			t.Fatalf("List ?dc=%s: %v, %v", a.Datacenter, list, err)
		}
	})
}

// TestFilterRefused (issue 12 item 6, SPEC §13): QueryOptions.Filter on the peering reads,
// which do not evaluate filters, is a 400, never a silently unfiltered answer.
func TestFilterRefused(t *testing.T) {
	t.Parallel()
	client := clusterA(t).Client(t, "")
	ctx := ctxFor(t, 30*time.Second)
	const body = "filter expressions are not supported on this endpoint"
	q := &api.QueryOptions{Filter: `Name == "x"`, Partition: "filter-param"}

	t.Run("List", func(t *testing.T) {
		_, _, err := client.Peerings().List(ctx, q)
		wantStatus(t, err, 400, body)
	})
	t.Run("Read", func(t *testing.T) {
		_, _, err := client.Peerings().Read(ctx, "x", q)
		wantStatus(t, err, 400, body)
	})
}

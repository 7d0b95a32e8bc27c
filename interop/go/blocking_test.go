package interop

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestBlockingRead: Read with QueryOptions.WaitIndex/WaitTime waits for the peering's next
// write, or for the wait to end, and QueryMeta.LastIndex is its ModifyIndex.
func TestBlockingRead(t *testing.T) {
	t.Parallel()
	client := clusterA(t).Client(t, "")
	ctx := ctxFor(t, 60*time.Second)
	const name, part = "block-read", "blocking-read"
	q := &api.QueryOptions{Partition: part}

	if _, _, err := client.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: name, Partition: part}, nil); err != nil {
		t.Fatal(err)
	}
	p, meta, err := client.Peerings().Read(ctx, name, q)
	if err != nil || p == nil {
		t.Fatalf("Read: %s, %v", describe(p), err)
	}
	if meta.LastIndex != p.ModifyIndex {
		t.Fatalf("X-Consul-Index %d, ModifyIndex %d", meta.LastIndex, p.ModifyIndex)
	}
	index := meta.LastIndex

	// Nothing changes: the query answers when its wait ends, with the same index.
	started := time.Now()
	same, meta, err := client.Peerings().Read(ctx, name, &api.QueryOptions{Partition: part, WaitIndex: index, WaitTime: 400 * time.Millisecond})
	elapsed := time.Since(started)
	if err != nil || same == nil {
		t.Fatalf("blocking Read: %s, %v", describe(same), err)
	}
	if elapsed < 350*time.Millisecond || elapsed > 5*time.Second {
		t.Fatalf("a 400ms wait with no change answered after %s", elapsed)
	}
	if meta.LastIndex != index {
		t.Fatalf("no change, but the index moved %d → %d", index, meta.LastIndex)
	}

	// A write wakes the waiting query at once.
	results, written := readAsync(ctx, client, name, &api.QueryOptions{Partition: part, WaitIndex: index, WaitTime: 30 * time.Second})
	awaitWritten(t, written)
	if _, _, err := client.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: name, Partition: part}, nil); err != nil {
		t.Fatal(err)
	}
	got := within(t, results, 10*time.Second, "blocking Read woken by a write")
	if got.err != nil || got.peering == nil {
		t.Fatalf("woken Read: %s, %v", describe(got.peering), got.err)
	}
	if got.meta.LastIndex <= index || got.peering.ModifyIndex != got.meta.LastIndex {
		t.Fatalf("woken Read: X-Consul-Index %d (was %d), ModifyIndex %d", got.meta.LastIndex, index, got.peering.ModifyIndex)
	}
	if got.elapsed > 5*time.Second {
		t.Fatalf("woken after %s", got.elapsed)
	}
}

// TestBlockingList: List with WaitIndex returns when a peering of its partition changes.
func TestBlockingList(t *testing.T) {
	t.Parallel()
	client := clusterA(t).Client(t, "")
	ctx := ctxFor(t, 60*time.Second)
	const part = "blocking-list"

	if _, _, err := client.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "list-one", Partition: part}, nil); err != nil {
		t.Fatal(err)
	}
	list, meta, err := client.Peerings().List(ctx, &api.QueryOptions{Partition: part})
	if err != nil || len(list) != 1 {
		t.Fatalf("List: %v, %v", list, err)
	}
	index := meta.LastIndex
	if index < list[0].ModifyIndex {
		t.Fatalf("X-Consul-Index %d below ModifyIndex %d", index, list[0].ModifyIndex)
	}

	results, written := listAsync(ctx, client, &api.QueryOptions{Partition: part, WaitIndex: index, WaitTime: 30 * time.Second})
	awaitWritten(t, written)
	if _, _, err := client.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "list-two", Partition: part}, nil); err != nil {
		t.Fatal(err)
	}
	got := within(t, results, 10*time.Second, "blocking List woken by a write")
	if got.err != nil {
		t.Fatal(got.err)
	}
	if len(got.peerings) != 2 || got.peerings[0].Name != "list-one" || got.peerings[1].Name != "list-two" {
		t.Fatalf("woken List: %v", got.peerings)
	}
	if got.meta.LastIndex <= index || got.meta.LastIndex < got.peerings[1].ModifyIndex {
		t.Fatalf("woken List: X-Consul-Index %d (was %d), newest ModifyIndex %d", got.meta.LastIndex, index, got.peerings[1].ModifyIndex)
	}
}

// TestEmptyListIndex (issue 12 item 8): the index of an empty list is below the index of
// the first write after it, so a watcher blocking on it from the empty list is woken.
func TestEmptyListIndex(t *testing.T) {
	t.Parallel()
	fresh := newCluster(t) // a fresh cluster: nothing was ever written
	client := fresh.Client(t, "")
	ctx := ctxFor(t, 60*time.Second)

	check := func(t *testing.T, partition string) {
		q := &api.QueryOptions{Partition: partition}
		list, meta, err := client.Peerings().List(ctx, q)
		if err != nil || len(list) != 0 {
			t.Fatalf("List: %v, %v; want empty", list, err)
		}
		index := meta.LastIndex
		if index == 0 {
			t.Fatal("X-Consul-Index 0 (must be >= 1)")
		}
		results, written := listAsync(ctx, client, &api.QueryOptions{Partition: partition, WaitIndex: index, WaitTime: 30 * time.Second})
		awaitWritten(t, written)
		if _, _, err := client.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "first", Partition: partition}, nil); err != nil {
			t.Fatal(err)
		}
		got := within(t, results, 10*time.Second, "watcher of the empty list")
		if got.err != nil {
			t.Fatal(got.err)
		}
		if len(got.peerings) != 1 || got.elapsed > 5*time.Second {
			t.Fatalf("empty list's index %d: the watcher answered after %s with %d peerings (X-Consul-Index %d); "+
				"it must be woken by the first write", index, got.elapsed, len(got.peerings), got.meta.LastIndex)
		}
		if got.peerings[0].ModifyIndex <= index {
			t.Fatalf("the first peering's ModifyIndex %d is not above the empty list's index %d", got.peerings[0].ModifyIndex, index)
		}
	}
	// In order: the first case is the fresh cluster's very first write.
	t.Run("fresh cluster", func(t *testing.T) { check(t, "") })
	t.Run("empty partition of a used cluster", func(t *testing.T) { check(t, "unused-until-now") })
}

// TestConsistencyModes: QueryOptions.AllowStale (?stale) and RequireConsistent (?consistent)
// are accepted, and QueryMeta shows a known leader with no replication lag.
func TestConsistencyModes(t *testing.T) {
	t.Parallel()
	client := clusterA(t).Client(t, "")
	ctx := ctxFor(t, 30*time.Second)
	for name, q := range map[string]*api.QueryOptions{
		"AllowStale":        {AllowStale: true, Partition: "modes"},
		"RequireConsistent": {RequireConsistent: true, Partition: "modes"},
	} {
		t.Run(name, func(t *testing.T) {
			list, meta, err := client.Peerings().List(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if list == nil || !meta.KnownLeader || meta.LastContact != 0 || meta.LastIndex == 0 {
				t.Fatalf("List %s: %v, meta %+v", name, list, meta)
			}
		})
	}
}

package interop

import (
	"context"
	"fmt"
	"net/http/httptrace"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// awaitTimeout bounds every wait for a state change.
const awaitTimeout = 15 * time.Second

// awaitPeering waits, with blocking reads (QueryOptions.WaitIndex), until cond holds
// for the peering `name` in `partition` (p is nil once the peering is gone).
func awaitPeering(t testing.TB, client *api.Client, name, partition, what string, cond func(p *api.Peering) bool) *api.Peering {
	t.Helper()
	deadline := time.Now().Add(awaitTimeout)
	var index uint64
	var last *api.Peering
	for {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			t.Fatalf("%s: not within %s; last read of %q: %s", what, awaitTimeout, name, describe(last))
		}
		// Short slices: a change that bumps no index (e.g. a heartbeat time) still gets seen.
		wait := min(remaining, time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), wait+10*time.Second)
		p, qm, err := client.Peerings().Read(ctx, name, &api.QueryOptions{Partition: partition, WaitIndex: index, WaitTime: wait})
		cancel()
		if err != nil {
			t.Fatalf("%s: reading %q: %v", what, name, err)
		}
		if cond(p) {
			return p
		}
		last = p
		index = qm.LastIndex
	}
}

func describe(p *api.Peering) string {
	if p == nil {
		return "not found"
	}
	return fmt.Sprintf("%+v", *p)
}

// gauge is the value of a gauge in the client's Agent().Metrics(), and whether it is served.
func gauge(t testing.TB, client *api.Client, name string) (float32, bool) {
	t.Helper()
	info, err := client.Agent().Metrics()
	if err != nil {
		t.Fatalf("Agent().Metrics(): %v", err)
	}
	var total float32
	found := false
	for _, g := range info.Gauges {
		if g.Name == name {
			total += g.Value
			found = true
		}
	}
	return total, found
}

// blockingGauge counts the blocking queries a cluster is holding open (SPEC §3).
const blockingGauge = "peering_blocking_queries"

// awaitGauge waits until cond holds for the gauge's value (bounded; the metrics endpoint
// is polled because a gauge has no blocking form). It fails if the gauge is not served.
func awaitGauge(t testing.TB, client *api.Client, name, what string, cond func(v float32) bool) float32 {
	t.Helper()
	deadline := time.Now().Add(awaitTimeout)
	for {
		v, found := gauge(t, client, name)
		if !found {
			t.Fatalf("%s: gauge %s is not in Agent().Metrics()", what, name)
		}
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: gauge %s = %v after %s", what, name, v, awaitTimeout)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval, not a guess at how long something takes
	}
}

// writtenCtx is ctx plus a channel closed once the client has written its request
// out (httptrace), so a test knows its blocking query reached the server's socket.
func writtenCtx(ctx context.Context) (context.Context, <-chan struct{}) {
	written := make(chan struct{})
	var once sync.Once
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
		once.Do(func() { close(written) })
	}}
	return httptrace.WithClientTrace(ctx, trace), written
}

// awaitWritten waits until the request behind written is on the wire.
func awaitWritten(t testing.TB, written <-chan struct{}) {
	t.Helper()
	select {
	case <-written:
	case <-time.After(awaitTimeout):
		t.Fatalf("the blocking query was not written within %s", awaitTimeout)
	}
}

// listResult is what a List in a goroutine came back with.
type listResult struct {
	peerings []*api.Peering
	meta     *api.QueryMeta
	err      error
	elapsed  time.Duration
}

// listAsync starts a (blocking) List and returns the channel its result arrives on,
// plus a channel closed once the request has been written.
func listAsync(ctx context.Context, client *api.Client, q *api.QueryOptions) (<-chan listResult, <-chan struct{}) {
	ctx, written := writtenCtx(ctx)
	out := make(chan listResult, 1)
	go func() {
		started := time.Now()
		peerings, meta, err := client.Peerings().List(ctx, q)
		out <- listResult{peerings, meta, err, time.Since(started)}
	}()
	return out, written
}

// readResult is what a Read in a goroutine came back with.
type readResult struct {
	peering *api.Peering
	meta    *api.QueryMeta
	err     error
	elapsed time.Duration
}

func readAsync(ctx context.Context, client *api.Client, name string, q *api.QueryOptions) (<-chan readResult, <-chan struct{}) {
	ctx, written := writtenCtx(ctx)
	out := make(chan readResult, 1)
	go func() {
		started := time.Now()
		p, meta, err := client.Peerings().Read(ctx, name, q)
		out <- readResult{p, meta, err, time.Since(started)}
	}()
	return out, written
}

// within receives from ch or fails after d.
func within[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: no answer within %s", what, d)
		var zero T
		return zero
	}
}

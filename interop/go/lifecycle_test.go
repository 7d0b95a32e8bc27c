package interop

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestShutdownAnswersBlockingQueries (issue 12 item 4, SPEC §2): SIGTERM while blocking
// queries are open answers them normally at once (as if their wait ended) and the
// process exits 0 promptly, without an error in its log.
func TestShutdownAnswersBlockingQueries(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	client := c.Client(t, "")
	ctx := ctxFor(t, 60*time.Second)

	if _, _, err := client.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "watched"}, nil); err != nil {
		t.Fatal(err)
	}
	list, meta, err := client.Peerings().List(ctx, nil)
	if err != nil || len(list) != 1 {
		t.Fatalf("List: %v, %v", list, err)
	}
	index := meta.LastIndex
	lists, listWritten := listAsync(ctx, client, &api.QueryOptions{WaitIndex: index, WaitTime: 60 * time.Second})
	reads, readWritten := readAsync(ctx, client, "watched", &api.QueryOptions{WaitIndex: list[0].ModifyIndex, WaitTime: 60 * time.Second})
	awaitWritten(t, listWritten)
	awaitWritten(t, readWritten)
	if _, served := gauge(t, client, blockingGauge); served {
		awaitGauge(t, client, blockingGauge, "both queries pending", func(v float32) bool { return v >= 2 })
	} else {
		t.Logf("gauge %s not served: relying on the requests having been written", blockingGauge)
	}

	signalled := time.Now()
	if err := c.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	gotList := within(t, lists, 5*time.Second, "blocking List after SIGTERM")
	gotRead := within(t, reads, 5*time.Second, "blocking Read after SIGTERM")
	if gotList.err != nil {
		t.Fatalf("blocking List after SIGTERM: %v (after %s)", gotList.err, time.Since(signalled))
	}
	if len(gotList.peerings) != 1 || gotList.meta.LastIndex != index {
		t.Fatalf("blocking List after SIGTERM: %d peerings, X-Consul-Index %d (was %d)", len(gotList.peerings), gotList.meta.LastIndex, index)
	}
	if gotRead.err != nil || gotRead.peering == nil || gotRead.peering.Name != "watched" {
		t.Fatalf("blocking Read after SIGTERM: %s, %v", describe(gotRead.peering), gotRead.err)
	}
	select {
	case <-c.Exited():
	case <-time.After(5 * time.Second):
		t.Fatalf("still running %s after SIGTERM", time.Since(signalled))
	}
	elapsed := time.Since(signalled)
	if code := c.ExitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
	for _, line := range c.Lines() {
		if strings.Contains(line, `"level": "error"`) || strings.Contains(line, "Traceback") ||
			strings.Contains(line, "timeout graceful shutdown exceeded") {
			t.Fatalf("error in the log during shutdown: %s", line)
		}
	}
	t.Logf("answered and exited %s after SIGTERM", elapsed)
}

// TestAbandonedBlockingQueryReleased (issue 12 item 5): a blocking query whose client goes
// away (context cancelled: the connection closes) stops being held by the server, with an
// explicit wait and with the default one (5 minutes).
func TestAbandonedBlockingQueryReleased(t *testing.T) {
	t.Parallel()
	c := newCluster(t) // its own cluster: the gauge counts every pending query
	client := c.Client(t, "")
	ctx := ctxFor(t, 60*time.Second)

	_, meta, err := client.Peerings().List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, served := gauge(t, client, blockingGauge); !served {
		t.Fatalf("gauge %s is not in Agent().Metrics(): cannot observe the server's pending queries", blockingGauge)
	} else if v != 0 {
		t.Fatalf("gauge %s = %v before any query", blockingGauge, v)
	}

	abandon, cancel := context.WithCancel(ctx)
	explicit, explicitWritten := listAsync(abandon, client, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 60 * time.Second})
	defaulted, defaultWritten := listAsync(abandon, client, &api.QueryOptions{WaitIndex: meta.LastIndex})
	awaitWritten(t, explicitWritten)
	awaitWritten(t, defaultWritten)
	awaitGauge(t, client, blockingGauge, "both queries pending", func(v float32) bool { return v == 2 })

	cancel() // the client gives up: its connections close
	for _, ch := range []<-chan listResult{explicit, defaulted} {
		got := within(t, ch, 5*time.Second, "cancelled List")
		if !errors.Is(got.err, context.Canceled) {
			t.Fatalf("cancelled List: %v", got.err)
		}
	}
	released := time.Now()
	awaitGauge(t, client, blockingGauge, "abandoned queries released", func(v float32) bool { return v == 0 })
	if elapsed := time.Since(released); elapsed > 5*time.Second {
		t.Fatalf("abandoned queries released only after %s", elapsed)
	}
}

package interop

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

const (
	// startTimeout bounds how long a cluster may take to log "cluster ready"
	// (two cores shared by several test runs: generous on purpose).
	startTimeout = 60 * time.Second
	// stopTimeout bounds a SIGTERM shutdown before the process is killed.
	stopTimeout = 15 * time.Second
	// requestTimeout bounds every HTTP request the client makes, blocking ones included.
	requestTimeout = 90 * time.Second
)

// baseArgs are given to every cluster: OS-chosen ports, JSON logs, fast heartbeats
// (establish and state changes settle in well under a second).
var baseArgs = []string{
	"--http-addr", "127.0.0.1:0",
	"--peering-addr", "127.0.0.1:0",
	"--log-format", "json",
	"--heartbeat-interval", "0.2",
	"--heartbeat-timeout", "5",
}

// Cluster is one running `peering serve` process and what it logged about itself.
type Cluster struct {
	HTTPAddr      string
	PeeringAddr   string
	AdvertiseAddr string
	Datacenter    string

	cmd     *exec.Cmd
	dataDir string
	exited  chan struct{} // closed once the process has been waited for
	waitErr error         // valid after exited is closed

	mu    sync.Mutex
	lines []string // every stderr line, for diagnostics and log assertions

	stopOnce sync.Once
	stopErr  error
	exitCode int
}

var (
	registryMu sync.Mutex
	registry   []*Cluster // every cluster started, stopped at the end whatever happened
)

// pythonPath is the interpreter that runs `-m peering`: PEERING_PYTHON, or the repository's venv.
func pythonPath() (string, error) {
	path := os.Getenv("PEERING_PYTHON")
	if path == "" {
		path = filepath.Join("..", "..", ".venv", "bin", "python")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("python interpreter %s not found (set PEERING_PYTHON, or run `make` once to create .venv): %w", abs, err)
	}
	return abs, nil
}

// childEnv is this process's environment without PEERING_* and CONSUL_* variables,
// so a developer's settings cannot change what the tests start.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PEERING_") || strings.HasPrefix(kv, "CONSUL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// startCluster runs `python -m peering serve` with baseArgs plus args and returns once
// the process logged "cluster ready" (or fails with its log).
func startCluster(args ...string) (*Cluster, error) {
	python, err := pythonPath()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "peering-interop-")
	if err != nil {
		return nil, err
	}
	full := append([]string{"-m", "peering", "serve", "--data-dir", filepath.Join(dataDir, "data")}, baseArgs...)
	cmd := exec.Command(python, append(full, args...)...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = childEnv()
	cmd.Stdout = io.Discard
	// If this test binary dies (panic, timeout), the kernel kills the server too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		_ = os.RemoveAll(dataDir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dataDir)
		return nil, err
	}
	c := &Cluster{cmd: cmd, dataDir: dataDir, exited: make(chan struct{})}
	registryMu.Lock()
	registry = append(registry, c)
	registryMu.Unlock()

	ready := make(chan map[string]any, 1)
	go func() {
		scanner := bufio.NewScanner(stderr)
		scanner.Buffer(make([]byte, 64*1024), 4*1024*1024)
		sent := false
		for scanner.Scan() {
			line := scanner.Text()
			c.mu.Lock()
			c.lines = append(c.lines, line)
			c.mu.Unlock()
			if sent {
				continue
			}
			var entry map[string]any
			if json.Unmarshal([]byte(line), &entry) == nil && entry["message"] == "cluster ready" {
				ready <- entry
				sent = true
			}
		}
		// Wait only after every read from the pipe is done (os/exec's rule).
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()

	select {
	case entry := <-ready:
		c.HTTPAddr, _ = entry["http_addr"].(string)
		c.PeeringAddr, _ = entry["peering_addr"].(string)
		c.AdvertiseAddr, _ = entry["advertise_addr"].(string)
		c.Datacenter, _ = entry["datacenter"].(string)
		if c.AdvertiseAddr == "" {
			c.AdvertiseAddr = c.PeeringAddr // the default (SPEC §2)
		}
		if c.HTTPAddr == "" || c.PeeringAddr == "" {
			_, _ = c.Stop()
			return nil, fmt.Errorf("cluster ready line without addresses:\n%s", c.Log())
		}
		return c, nil
	case <-c.exited:
		_, _ = c.Stop()
		return nil, fmt.Errorf("peering serve exited before it was ready (%v):\n%s", c.waitErr, c.Log())
	case <-time.After(startTimeout):
		_, _ = c.Stop()
		return nil, fmt.Errorf("peering serve not ready after %s:\n%s", startTimeout, c.Log())
	}
}

// newCluster starts a cluster that belongs to t: it is stopped when t ends.
func newCluster(t testing.TB, args ...string) *Cluster {
	t.Helper()
	c, err := startCluster(args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster %s, last lines of its log:\n%s", c.HTTPAddr, c.Tail(60))
		}
		if code, err := c.Stop(); err != nil {
			t.Errorf("stopping cluster %s: exit %d: %v", c.HTTPAddr, code, err)
		}
	})
	return c
}

// Signal sends sig to the server process (by its PID).
func (c *Cluster) Signal(sig syscall.Signal) error {
	return c.cmd.Process.Signal(sig)
}

// Exited is closed once the process has exited.
func (c *Cluster) Exited() <-chan struct{} { return c.exited }

// ExitCode is the process's exit status once Exited is closed (-1 if killed by a signal).
func (c *Cluster) ExitCode() int { return c.cmd.ProcessState.ExitCode() }

// Stop ends the process: SIGTERM, then SIGKILL after stopTimeout. It returns the exit
// code and an error if the process had to be killed or exited non-zero. Safe to call twice.
func (c *Cluster) Stop() (int, error) {
	c.stopOnce.Do(func() {
		select {
		case <-c.exited:
		default:
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.exited:
			case <-time.After(stopTimeout):
				_ = c.cmd.Process.Kill()
				<-c.exited
				c.stopErr = fmt.Errorf("no exit within %s of SIGTERM: killed", stopTimeout)
			}
		}
		c.exitCode = c.cmd.ProcessState.ExitCode()
		if c.stopErr == nil && c.exitCode != 0 {
			c.stopErr = fmt.Errorf("exit status %d; log:\n%s", c.exitCode, c.Log())
		}
		_ = os.RemoveAll(c.dataDir)
	})
	return c.exitCode, c.stopErr
}

// Lines is a copy of the stderr lines logged so far.
func (c *Cluster) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// Tail is the last n lines of stderr.
func (c *Cluster) Tail(n int) string {
	lines := c.Lines()
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Log is the stderr logged so far, for failure messages.
func (c *Cluster) Log() string { return strings.Join(c.Lines(), "\n") }

// Client is the official client pointed at this cluster, with token as X-Consul-Token
// (empty: anonymous) and nothing taken from the environment.
func (c *Cluster) Client(t testing.TB, token string) *api.Client {
	t.Helper()
	return c.PartitionClient(t, token, "")
}

// PartitionClient is Client with Config.Partition set: the client then sends
// ?partition= on every request.
func (c *Cluster) PartitionClient(t testing.TB, token, partition string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = c.HTTPAddr
	cfg.Scheme = "http"
	cfg.Token = token
	cfg.TokenFile = ""
	cfg.Datacenter = ""
	cfg.Namespace = ""
	cfg.Partition = partition
	httpClient, err := api.NewHttpClient(cfg.Transport, cfg.TLSConfig)
	if err != nil {
		t.Fatal(err)
	}
	httpClient.Timeout = requestTimeout
	cfg.HttpClient = httpClient
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

var (
	sharedMu sync.Mutex
	shared   = map[string]*sharedCluster{}
)

type sharedCluster struct {
	once    sync.Once
	cluster *Cluster
	err     error
}

// sharedClusterFor is one cluster per key, started by the first test that asks and
// stopped by TestMain after every test: tests that share one use their own names and
// partitions so they cannot see each other's peerings.
func sharedClusterFor(t testing.TB, key string, args ...string) *Cluster {
	t.Helper()
	sharedMu.Lock()
	s, ok := shared[key]
	if !ok {
		s = &sharedCluster{}
		shared[key] = s
	}
	sharedMu.Unlock()
	s.once.Do(func() { s.cluster, s.err = startCluster(args...) })
	if s.err != nil {
		t.Fatalf("shared cluster %q: %v", key, s.err)
	}
	c := s.cluster
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared cluster %q (%s), last lines of its log:\n%s", key, c.HTTPAddr, c.Tail(60))
		}
	})
	return c
}

// clusterA and clusterB are the shared pair with ACLs off (dc1 and dc2) that peer with each other.
func clusterA(t testing.TB) *Cluster { return sharedClusterFor(t, "a", "--datacenter", "dc1") }
func clusterB(t testing.TB) *Cluster { return sharedClusterFor(t, "b", "--datacenter", "dc2") }

// managementSecret is the shared ACL cluster's initial management token.
var managementSecret = newUUID()

// aclCluster is the shared cluster with ACLs on, default deny, and a known management token.
func aclCluster(t testing.TB) *Cluster {
	return sharedClusterFor(t, "acl", "--acl-enabled", "--acl-default-policy", "deny",
		"--acl-initial-management-token", managementSecret)
}

// stopAll stops every cluster still running; it reports the ones that did not stop cleanly.
func stopAll() error {
	registryMu.Lock()
	defer registryMu.Unlock()
	var errs []error
	for _, c := range registry {
		if _, err := c.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", c.HTTPAddr, err))
		}
	}
	return errors.Join(errs...)
}

func TestMain(m *testing.M) {
	// The client reads CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, … by default: none may leak in.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "CONSUL_") {
			_ = os.Unsetenv(name)
		}
	}
	if _, err := pythonPath(); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := stopAll(); err != nil {
		fmt.Fprintln(os.Stderr, "interop: stopping clusters:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// newUUID is a random RFC 4122 version 4 UUID.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// ctxFor is a context that ends after d, cancelled when t ends.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// statusError is err as the client's StatusError (code and body of a non-200 answer).
func statusError(t testing.TB, err error) api.StatusError {
	t.Helper()
	var se api.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("want an api.StatusError (an HTTP error answer), got %T: %v", err, err)
	}
	return se
}

// wantStatus checks that err is an answer with this status code and exactly this body.
func wantStatus(t testing.TB, err error, code int, body string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %d %q, got success", code, body)
	}
	se := statusError(t, err)
	if se.Code != code || se.Body != body {
		t.Fatalf("want %d %q, got %d %q", code, body, se.Code, se.Body)
	}
}

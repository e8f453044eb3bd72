package proxy

// Several gateways on one Redis (README "Running several instances"): the
// limits summed over the cluster, Redis going away and coming back, and an
// instance killed with its sessions.

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wsgate/internal/testutil/redistest"
	"wsgate/internal/wstest"
)

func init() {
	// The machine running the tests may be loaded: a Redis operation that
	// takes longer than the production bound (50 ms) would fall back to
	// local limits and make these tests flaky. internal/cluster tests the
	// bound itself.
	clusterOpTimeout = 2 * time.Second
}

// clusterYAML is limitYAML toward builtin:echo with a cluster block.
func clusterYAML(redisURL, node, fail, rateLimit string, kv ...string) string {
	return limitYAML("builtin:echo", rateLimit, kv...) +
		fmt.Sprintf("cluster:\n  redis: %q\n  node: %s\n  fail: %s\n", redisURL, node, fail)
}

// startCluster starts n gateways with the same limits on one Redis.
func startCluster(t *testing.T, srv *redistest.Server, n int, fail, rateLimit string, kv ...string) []*testGateway {
	t.Helper()
	var gws []*testGateway
	for i := range n {
		gws = append(gws, startGateway(t, clusterYAML(srv.URL(), "gw"+strconv.Itoa(i+1), fail, rateLimit, kv...)))
	}
	return gws
}

// clusterGauge reads wsgate_cluster_up; clusterErrors sums
// wsgate_cluster_errors_total over its ops.
func clusterGauge(t *testing.T, g *Gateway) float64 {
	return gathered(t, g, "wsgate_cluster_up")
}

func clusterErrors(t *testing.T, g *Gateway) float64 {
	return gathered(t, g, "wsgate_cluster_errors_total")
}

func gathered(t *testing.T, g *Gateway, name string) float64 {
	t.Helper()
	mfs, err := g.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			found = true
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if !found {
		t.Fatalf("%s is not exported", name)
	}
	return sum
}

func TestClusterHandshakesShared(t *testing.T) {
	srv := redistest.Start(t)
	gws := startCluster(t, srv, 3, "open", "{handshakes: {rate: 1/s, burst: 6}}")
	start := time.Now()
	for i := range 6 {
		a := wstest.MustHandshake(t, gws[i%3].Addr, "", nil)
		if a.Status() != http.StatusSwitchingProtocols {
			t.Fatalf("handshake %d on gw%d: %d %s", i+1, i%3+1, a.Status(), a.Body)
		}
	}
	// The 7th gets 429 on any instance. One token comes back per second:
	// on a slow machine a few more may pass, never more than that.
	admitted := 6
	for i := 6; ; i++ {
		a := wstest.MustHandshake(t, gws[i%3].Addr, "", nil)
		if a.Status() == http.StatusTooManyRequests {
			if a.Resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			break
		}
		if a.Status() != http.StatusSwitchingProtocols {
			t.Fatalf("handshake %d: %d %s", i+1, a.Status(), a.Body)
		}
		admitted++
		if allowed := 6 + int(time.Since(start).Seconds()); admitted > allowed {
			t.Fatalf("%d handshakes admitted over three instances in %v; the shared limit allows %d",
				admitted, time.Since(start), allowed)
		}
	}
	for _, g := range gws {
		if clusterGauge(t, g.Gateway) != 1 {
			t.Error("wsgate_cluster_up is not 1")
		}
	}
}

func TestClusterConnectionsShared(t *testing.T) {
	srv := redistest.Start(t)
	gws := startCluster(t, srv, 3, "open", "{connections_per_ip: 4}")
	var peers []*wstest.Peer
	for i, g := range []int{0, 0, 1, 2} {
		a := wstest.MustHandshake(t, gws[g].Addr, "", nil)
		if a.Status() != http.StatusSwitchingProtocols {
			t.Fatalf("session %d on gw%d: %d %s", i+1, g+1, a.Status(), a.Body)
		}
		peers = append(peers, a.Peer)
	}
	for _, g := range gws {
		if a := wstest.MustHandshake(t, g.Addr, "", nil); a.Status() != http.StatusTooManyRequests {
			t.Fatalf("a 5th session over the cluster: %d, want 429", a.Status())
		}
	}
	// A session that ends frees its slot for every instance.
	peers[0].SendClose(1000, "")
	peers[0].ReadClose()
	eventually(t, "a freed slot on another instance", func() bool {
		a := wstest.MustHandshake(t, gws[2].Addr, "", nil)
		return a.Status() == http.StatusSwitchingProtocols
	})
}

// TestClusterMessagesPerIP: one address floods from a session on each of
// three instances, throttled; what passes is held to the shared limit
// within the documented lag: over t seconds at most rate*t + burst plus,
// for each other instance, burst + rate*100ms. Without sharing, each
// instance would pass the whole limit.
func TestClusterMessagesPerIP(t *testing.T) {
	srv := redistest.Start(t)
	const rate, burst, n = 50.0, 10, 3
	gws := startCluster(t, srv, n, "open", "{messages_per_ip: {rate: 50/s, burst: 10}, on_exceed: throttle}")
	var conns []*websocket.Conn
	for _, g := range gws {
		c, _, err := websocket.DefaultDialer.Dial(g.URL+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	const window = 2 * time.Second
	var passed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(window)
	for _, c := range conns {
		wg.Add(2)
		go func() { // flood
			defer wg.Done()
			_ = c.SetWriteDeadline(end.Add(time.Second))
			for time.Now().Before(end) {
				if c.WriteMessage(websocket.TextMessage, []byte("m")) != nil {
					return
				}
			}
		}()
		go func() { // count the echoes that came back within the window
			defer wg.Done()
			_ = c.SetReadDeadline(end)
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
				passed.Add(1)
			}
		}()
	}
	wg.Wait()
	got := float64(passed.Load())
	limit := rate*window.Seconds() + burst
	bound := limit + (n-1)*(burst+rate*0.1)
	t.Logf("%v messages passed in %v over %d instances; the limit is %v, with the lag %v", got, window, n, limit, bound)
	for i, g := range gws {
		if e := clusterErrors(t, g.Gateway); e != 0 {
			t.Logf("gw%d: %v cluster errors\n%s", i+1, e, g.Logs.String())
		}
	}
	if got > bound*1.05 {
		t.Errorf("%v messages passed, over the shared limit with its lag (%v)", got, bound)
	}
	if got < limit/2 {
		t.Errorf("only %v messages passed of %v allowed", got, limit)
	}
}

// TestClusterFailOpen: Redis stops; each instance limits alone, reports
// wsgate_cluster_up 0 and counts errors; Redis comes back (empty) and the
// shared limit resumes without a restart of the gateways.
func TestClusterFailOpen(t *testing.T) {
	srv := redistest.Start(t)
	gws := startCluster(t, srv, 3, "open", "{handshakes: {rate: 1/m, burst: 2}}")
	status := func(g int) int { return wstest.MustHandshake(t, gws[g].Addr, "", nil).Status() }
	if status(0) != 101 || status(1) != 101 || status(2) != 429 {
		t.Fatal("the shared limit does not hold with Redis up")
	}
	srv.Stop()
	for _, g := range gws {
		eventually(t, "wsgate_cluster_up 0", func() bool { return clusterGauge(t, g.Gateway) == 0 })
	}
	// Local limits: burst 2 on each instance, untouched so far.
	for g := range gws {
		if s1, s2, s3 := status(g), status(g), status(g); s1 != 101 || s2 != 101 || s3 != 429 {
			t.Fatalf("gw%d with Redis away: %d %d %d, want its own limit (101 101 429)", g+1, s1, s2, s3)
		}
		if clusterErrors(t, gws[g].Gateway) < 1 {
			t.Errorf("gw%d counted no cluster errors", g+1)
		}
	}
	srv.Start()
	for _, g := range gws {
		eventually(t, "wsgate_cluster_up 1", func() bool { return clusterGauge(t, g.Gateway) == 1 })
	}
	// Shared again: 2 for the whole cluster (the local buckets are all
	// empty, so this is Redis's bucket, which came back full).
	if s1, s2, s3 := status(1), status(2), status(0); s1 != 101 || s2 != 101 || s3 != 429 {
		t.Fatalf("after Redis came back: %d %d %d, want the shared limit (101 101 429)", s1, s2, s3)
	}
}

func TestClusterFailClosed(t *testing.T) {
	srv := redistest.Start(t)
	gws := startCluster(t, srv, 1, "closed", "")
	g := gws[0]
	if s := wstest.MustHandshake(t, g.Addr, "", nil).Status(); s != 101 {
		t.Fatalf("with Redis up: %d", s)
	}
	srv.Stop()
	eventually(t, "503 with Redis away", func() bool {
		a := wstest.MustHandshake(t, g.Addr, "", nil)
		return a.Status() == http.StatusServiceUnavailable && a.Resp.Header.Get("Retry-After") != ""
	})
	srv.Start()
	eventually(t, "101 with Redis back", func() bool {
		return wstest.MustHandshake(t, g.Addr, "", nil).Status() == 101
	})
}

// TestClusterKilledInstance: a wsgate process holding 3 sessions of an
// address is killed with SIGKILL; within the heartbeat expiry (5 s) its
// slots count no more.
func TestClusterKilledInstance(t *testing.T) {
	srv := redistest.Start(t)
	addr := freeAddr(t)
	cfgText := strings.Replace(clusterYAML(srv.URL(), "doomed", "open", "{connections_per_ip: 4}"),
		"server:\n", "server:\n  listen: "+strconv.Quote(addr)+"\n", 1)
	cmd, logs := startWsgateProcess(t, cfgText)
	eventually(t, "the wsgate process listening", func() bool {
		a, err := wstest.Handshake(t, addr, "", nil)
		if err == nil && a.Peer != nil {
			a.Peer.Conn.Close()
		}
		return err == nil
	})
	local := startCluster(t, srv, 1, "open", "{connections_per_ip: 4}")[0]
	var held []*wstest.Peer
	eventually(t, "3 sessions on the process", func() bool {
		a := wstest.MustHandshake(t, addr, "", nil)
		if a.Peer != nil {
			held = append(held, a.Peer)
		}
		return len(held) == 3
	})
	// The probe's slot is released in the background.
	eventually(t, "a 4th session", func() bool {
		return wstest.MustHandshake(t, local.Addr, "", nil).Status() == 101
	})
	if s := wstest.MustHandshake(t, local.Addr, "", nil).Status(); s != 429 {
		t.Fatalf("5th session with 3 on the other instance: %d, want 429\n%s", s, logs.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var freed []int
	deadline := killed.Add(8 * time.Second)
	for len(freed) < 3 && time.Now().Before(deadline) {
		if a := wstest.MustHandshake(t, local.Addr, "", nil); a.Status() == 101 {
			freed = append(freed, 1)
			continue
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(killed)
	if len(freed) < 3 {
		t.Fatalf("%d of the killed instance's 3 slots free after %v", len(freed), took)
	}
	t.Logf("the killed instance's slots were free %v after SIGKILL", took)
	if took > 6*time.Second+500*time.Millisecond {
		t.Errorf("slots freed after %v; the README promises within 5 s of the last heartbeat", took)
	}
}

func freeAddr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }

// startWsgateProcess builds cmd/wsgate and runs it on cfgText as a process
// of its own (for tests that kill it with SIGKILL) until the test ends. It
// returns the process and what it logs.
func startWsgateProcess(t *testing.T, cfgText string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wsgate")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/wsgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfgFile := filepath.Join(t.TempDir(), "wsgate.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", cfgFile)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, logs
}

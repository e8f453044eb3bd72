package cluster

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"wsgate/internal/testutil/redistest"
	"wsgate/ratelimit"
)

// newCluster joins url as node. The operation timeout is generous, as the
// machine running the tests may be loaded; the tests of the bound itself
// set the default (newClusterTimeout).
func newCluster(t *testing.T, url, node string) (*Cluster, *prometheus.Registry) {
	return newClusterTimeout(t, url, node, 2*time.Second)
}

func newClusterTimeout(t *testing.T, url, node string, op time.Duration) (*Cluster, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(Options{URL: url, Node: node, Log: zerolog.Nop(), Registerer: reg, OpTimeout: op})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, reg
}

// eventually polls cond until it holds or d has passed.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var client = netip.MustParseAddr("192.0.2.7")

func TestAdmitHandshakesShared(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := newCluster(t, srv.URL(), "a")
	b, _ := newCluster(t, srv.URL(), "b")
	ctx := context.Background()
	hs := &Rate{PerSecond: 1, Burst: 3}
	for i, c := range []*Cluster{a, b, a} {
		v, _, err := c.Admit(ctx, "chat", client, hs, 0)
		if err != nil || v != Admitted {
			t.Fatalf("handshake %d: %v, %v; want admitted", i+1, v, err)
		}
	}
	v, retry, err := b.Admit(ctx, "chat", client, hs, 0)
	if err != nil || v != TooManyHandshakes || retry <= 0 || retry > time.Second {
		t.Fatalf("4th handshake: %v, retry %v, %v; want too many, retry within 1s", v, retry, err)
	}
	// Another address and another route have their own buckets.
	if v, _, _ := b.Admit(ctx, "chat", netip.MustParseAddr("192.0.2.8"), hs, 0); v != Admitted {
		t.Errorf("another address: %v", v)
	}
	if v, _, _ := b.Admit(ctx, "news", client, hs, 0); v != Admitted {
		t.Errorf("another route: %v", v)
	}
	// The key expires once the bucket is full again.
	ttl, err := srv.Do("PTTL", hsKey("chat", *hs, client))
	if n := atoiReply(ttl); err != nil || n <= 0 || n > 4001 {
		t.Errorf("PTTL of the handshakes key = %q, %v; want 0 < ttl <= 4s", ttl, err)
	}
}

func atoiReply(s string) int {
	n := 0
	neg := strings.HasPrefix(s, ":-")
	for _, r := range strings.TrimPrefix(strings.TrimPrefix(s, ":"), "-") {
		if r < '0' || r > '9' {
			break
		}
		n = n*10 + int(r-'0')
	}
	if neg {
		return -n
	}
	return n
}

func TestAdmitConnectionsShared(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := newCluster(t, srv.URL(), "a")
	b, _ := newCluster(t, srv.URL(), "b")
	dead, _ := newCluster(t, srv.URL(), "dead")
	ctx := context.Background()
	admit := func(c *Cluster) Verdict {
		t.Helper()
		v, _, err := c.Admit(ctx, "chat", client, nil, 3)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if admit(a) != Admitted || admit(b) != Admitted || admit(dead) != Admitted {
		t.Fatal("3 connections within the limit of 3 refused")
	}
	if admit(a) != TooManyConnections {
		t.Fatal("a 4th connection over the cluster was admitted")
	}
	a.Release("chat", client)
	eventually(t, 2*time.Second, "a released slot is free again", func() bool {
		v := admit(b)
		return v == Admitted
	})
	// "dead" stops without leaving (as if killed): its slot stops
	// counting within NodeTTL of its last heartbeat.
	dead.stop()
	dead.done.Wait()
	killed := time.Now()
	if admit(a) != TooManyConnections {
		t.Fatal("over the limit right after the kill")
	}
	eventually(t, NodeTTL+2*time.Second, "a killed instance's slot frees", func() bool { return admit(a) == Admitted })
	if d := time.Since(killed); d > NodeTTL+Heartbeat+500*time.Millisecond {
		t.Errorf("the slot freed after %v, want within NodeTTL", d)
	}
}

func TestDownAndBack(t *testing.T) {
	srv := redistest.Start(t)
	a, reg := newClusterTimeout(t, srv.URL(), "a", DefaultOpTimeout)
	a.SetSources(Sources{Conns: func(yield func(string, netip.Addr, int)) { yield("chat", client, 2) }})
	ctx := context.Background()
	if !a.Up() || gauge(t, reg, "wsgate_cluster_up") != 1 {
		t.Fatal("not up with the server running")
	}
	srv.Stop()
	eventually(t, 2*time.Second, "marked down", func() bool { return !a.Up() })
	if gauge(t, reg, "wsgate_cluster_up") != 0 {
		t.Error("wsgate_cluster_up is not 0 while down")
	}
	t0 := time.Now()
	if _, _, err := a.Admit(ctx, "chat", client, &Rate{1, 1}, 0); err == nil {
		t.Fatal("Admit succeeded with the server down")
	}
	if d := time.Since(t0); d > DefaultOpTimeout+450*time.Millisecond {
		t.Errorf("Admit waited %v while down, want at most %v", d, DefaultOpTimeout)
	}
	eventually(t, 2*time.Second, "ping errors counted", func() bool {
		return testutil.ToFloat64(a.errs.WithLabelValues(OpPing)) >= 1
	})
	srv.Start() // empty memory
	eventually(t, 3*time.Second, "up again", func() bool { return a.Up() })
	// Rejoining writes the open connections back.
	eventually(t, 2*time.Second, "connections written back", func() bool {
		r, _ := srv.Do("HGET", connHash("chat", client), a.ID())
		return r == "$1"
	})
	if v, _, err := a.Admit(ctx, "chat", client, nil, 2); err != nil || v != TooManyConnections {
		t.Errorf("after rejoining, the written-back connections count: %v, %v", v, err)
	}
}

// TestSlowServer: a server that accepts but never answers costs a
// handshake at most OpTimeout.
func TestSlowServer(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := newClusterTimeout(t, srv.URL(), "a", DefaultOpTimeout)
	if _, err := srv.Do("CLIENT", "PAUSE", "3000", "ALL"); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	_, _, err := a.Admit(context.Background(), "chat", client, &Rate{1, 1}, 0)
	if err == nil {
		t.Fatal("Admit succeeded on a paused server")
	}
	if d := time.Since(t0); d > DefaultOpTimeout+450*time.Millisecond {
		t.Errorf("Admit waited %v, want at most %v", d, DefaultOpTimeout)
	}
	if a.Up() {
		t.Error("a timed-out operation did not mark the server down")
	}
}

func TestSyncPerIP(t *testing.T) {
	srv := redistest.Start(t)
	r := Rate{PerSecond: 1, Burst: 10}
	var lims []*ratelimit.Keyed
	for _, n := range []string{"a", "b"} {
		c, _ := newCluster(t, srv.URL(), n)
		k := ratelimit.NewKeyed(1, 10, 1024)
		k.Track()
		lims = append(lims, k)
		c.SetSources(Sources{PerIP: func() []PerIPSource { return []PerIPSource{{Route: "chat", Rate: r, Limiter: k}} }})
	}
	a, b := lims[0], lims[1]
	for range 6 {
		a.AllowN(client, time.Now(), 1)
	}
	// b's next consumption is exchanged too, and b learns of a's six.
	b.AllowN(client, time.Now(), 1)
	eventually(t, 2*time.Second, "b's bucket holds the shared level", func() bool {
		return b.Tokens(client, time.Now()) < 4.5
	})
	n := 0
	for {
		if ok, _ := b.AllowN(client, time.Now(), 1); !ok {
			break
		}
		n++
	}
	if n > 4 {
		t.Errorf("b took %d more tokens after a took 6 and b 1 of a burst of 10", n)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not exported", name)
	return 0
}

func TestBus(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := newCluster(t, srv.URL(), "a")
	b, _ := newCluster(t, srv.URL(), "b")
	got := make(chan string, 4)
	stop, err := b.Subscribe(func(m []byte) { got <- "b:" + string(m) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	stopA, err := a.Subscribe(func(m []byte) { got <- "a:" + string(m) })
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	ctx := context.Background()
	nodes, err := a.Nodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("Nodes = %v, %v; want a and b", nodes, err)
	}
	if n, err := a.Publish(ctx, b.ID(), []byte("push s1")); err != nil || n != 1 {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if m := <-got; m != "b:push s1" {
		t.Fatalf("b got %q", m)
	}
	if n, err := b.Broadcast(ctx, []byte("all")); err != nil || n != 2 {
		t.Fatalf("Broadcast = %d, %v", n, err)
	}
	seen := map[string]bool{<-got: true, <-got: true}
	if !seen["a:all"] || !seen["b:all"] {
		t.Fatalf("broadcast reached %v", seen)
	}
}

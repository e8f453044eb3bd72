//go:build unix

package proxy

import (
	"testing"
	"time"

	"wsgate/internal/relay"
	"wsgate/internal/wstest"
)

// TestMaxSessionLifetime: sessions end between 4.5 and 5.5 s with
// max_session_lifetime: 5s, 1001 "session lifetime reached" on both sides;
// idle until then, they park (the deadline is one of the leg timers).
func TestMaxSessionLifetime(t *testing.T) {
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, "max_session_lifetime", "5s"))
	const n = 3
	type pair struct {
		c, u  *wstest.Peer
		start time.Time
	}
	var ps []pair
	for range n {
		c := wstest.DialRaw(t, gw.Addr, "/")
		ps = append(ps, pair{c, recvPeer(t, ups), time.Now()})
	}
	waitParked(t, gw.Gateway, 2*n, relay.ParkAfter+time.Second)
	// Not before 4.5 s: a Close that came earlier waits in the socket and
	// is read at once, which the elapsed time shows.
	time.Sleep(time.Until(ps[n-1].start.Add(4400 * time.Millisecond)))
	type result struct {
		side    string
		i, code int
		reason  string
		at      time.Duration
	}
	res := make(chan result, 2*n)
	for i, p := range ps {
		for _, peer := range []*wstest.Peer{p.c, p.u} {
			go func() {
				code, reason, _ := peer.ReadClose()
				res <- result{peer.Role(), i, code, reason, time.Since(p.start)}
			}()
		}
	}
	for range 2 * n {
		r := <-res
		if r.code != 1001 || r.reason != "session lifetime reached" {
			t.Errorf("session %d: %s got Close(%d, %q), want 1001 \"session lifetime reached\"", r.i, r.side, r.code, r.reason)
		}
		if r.at < 4500*time.Millisecond || r.at > 5500*time.Millisecond {
			t.Errorf("session %d: %s got its Close after %v, want 4.5 to 5.5 s", r.i, r.side, r.at)
		}
	}
	expectLog(t, gw, "reason", "lifetime")
}

func TestLifetimeJitter(t *testing.T) {
	if lifetimeOf(0) != 0 {
		t.Error("0 (unlimited) got a lifetime")
	}
	d := time.Hour
	lo, hi := d, time.Duration(0)
	for range 1000 {
		l := lifetimeOf(d)
		lo, hi = min(lo, l), max(hi, l)
	}
	if lo < 54*time.Minute || hi > 66*time.Minute {
		t.Errorf("lifetimes of 1h span %v to %v, want within ±10 %%", lo, hi)
	}
	if hi-lo < 5*time.Minute {
		t.Errorf("lifetimes of 1h span only %v to %v: no jitter", lo, hi)
	}
}

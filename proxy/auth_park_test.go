//go:build unix

package proxy

// Authenticated sessions park like any other: the token's deadline is one
// more relay timer (relay.SetExpiry), not a goroutine or a buffer.

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/internal/auth/authtest"
	"wsgate/internal/relay"
	"wsgate/internal/wstest"
)

// patientEchoUpstream echoes data and answers Close, and, unlike
// parkEchoUpstream, never gives up on a quiet connection: the sessions of
// these tests stay idle for longer than wstest.IO while a thousand others
// are being opened on a loaded machine.
func patientEchoUpstream(t testing.TB) *rawUpstream {
	return newRawUpstream(t, func(p *wstest.Peer) {
		for {
			f, err := p.Read()
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if err != nil {
				return
			}
			switch f.Opcode {
			case frame.OpText, frame.OpBinary:
				if p.WriteErr(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: f.Opcode}, f.Payload)) != nil {
					return
				}
			case frame.OpClose:
				_ = p.WriteErr(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpClose}, f.Payload))
				return
			}
		}
	})
}

// authParkYAML is a one-route config whose token comes in the query.
func authParkYAML(upstream, jwksURL string) string {
	return relayYAML(upstream, "auth",
		fmt.Sprintf("{jwt: {jwks_url: %q, issuer: %q, audience: [%s], token_from: [\"query:access_token\"]}}", jwksURL, testIss, testAud))
}

// TestAuthIdleSessionsPark: 1,000 idle sessions with hour-long tokens
// park both legs, without a goroutine of the gateway's each, and still
// relay when woken.
func TestAuthIdleSessionsPark(t *testing.T) {
	idp := authtest.New(t)
	up := patientEchoUpstream(t)
	gw := startGateway(t, authParkYAML(up.URL, idp.URL))
	target := "/?access_token=" + idp.Sign("ES256", claims("idle", time.Hour))
	const n = 1000
	before := runtime.NumGoroutine()
	cs := make([]*wstest.Peer, n)
	for i := range cs {
		cs[i] = wstest.DialRaw(t, gw.Addr, target)
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.Conn.Close()
		}
	})
	waitParked(t, gw.Gateway, 2*n, relay.ParkAfter+20*time.Second)
	runtime.GC()
	// parkEchoUpstream runs one handler goroutine per connection (the
	// test's, blocked in its own reads): count the gateway's alone.
	if g := runtime.NumGoroutine() - before; g > n+20 {
		t.Errorf("%d goroutines more than before %d parked sessions, want at most %d (the test upstream's handlers)", g, n, n+20)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		cs[i].Send(true, frame.OpText, []byte("wake"))
		if f := cs[i].Next(); f.Opcode != frame.OpText || string(f.Payload) != "wake" {
			t.Fatalf("session %d after parking: %v", i, f)
		}
	}
}

// BenchmarkIdleSessionMemory reports the heap an idle, parked session
// holds, with and without a token (and its expiry deadline): the two
// should match within noise.
//
//	go test -run XXX -bench IdleSessionMemory -benchtime 1x ./proxy/
func BenchmarkIdleSessionMemory(b *testing.B) {
	idp := authtest.New(b)
	for _, withAuth := range []bool{false, true} {
		name := "none"
		if withAuth {
			name = "jwt"
		}
		b.Run(name, func(b *testing.B) {
			up := patientEchoUpstream(b)
			yml, target := relayYAML(up.URL), "/"
			if withAuth {
				yml, target = authParkYAML(up.URL, idp.URL), "/?access_token="+idp.Sign("ES256", claims("idle", time.Hour))
			}
			gw := startGateway(b, yml)
			const n = 500
			var perSession float64
			for range b.N {
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				cs := make([]*wstest.Peer, n)
				for i := range cs {
					cs[i] = wstest.DialRaw(b, gw.Addr, target)
				}
				deadline := time.Now().Add(relay.ParkAfter + 20*time.Second)
				for p, _ := parkedLegs(gw.Gateway); p < 2*n; p, _ = parkedLegs(gw.Gateway) {
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d legs parked", p, 2*n)
					}
					time.Sleep(20 * time.Millisecond)
				}
				runtime.GC()
				runtime.ReadMemStats(&m1)
				// Both ends of each connection live in this process: the
				// figure includes the test clients and upstream handlers,
				// the same in both variants.
				perSession = float64(int64(m1.HeapInuse)-int64(m0.HeapInuse)) / n
				for _, c := range cs {
					c.Conn.Close()
				}
				eventually(b, "sessions to end", func() bool { return gw.Sessions() == 0 })
			}
			b.ReportMetric(perSession, "heap-B/session")
		})
	}
}

// TestAuthExpiryWhileParked: a parked session's timer covers its token's
// deadline: it is woken and closed (1008 / 1001) without any traffic.
func TestAuthExpiryWhileParked(t *testing.T) {
	idp := authtest.New(t)
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, authParkYAML(up.URL, idp.URL))
	c := wstest.DialRaw(t, gw.Addr, "/?access_token="+idp.Sign("RS256", claims("p", 6*time.Second)))
	u := recvPeer(t, ups)
	waitParked(t, gw.Gateway, 2, relay.ParkAfter+3*time.Second)
	_ = c.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_ = u.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	c.ExpectClose(1008, "token expired")
	u.ExpectClose(1001, "token expired")
}

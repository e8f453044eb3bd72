//go:build unix

package proxy

// Parking under stress: traffic around the relay.ParkAfter boundary, keepalive
// pings and every kind of ending; every session must end and leave nothing
// in the poller.

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/internal/relay"
	"wsgate/internal/wstest"
)

func parkEchoUpstream(t testing.TB) *rawUpstream {
	return newRawUpstream(t, func(p *wstest.Peer) {
		for {
			f, err := p.Read()
			if err != nil {
				return
			}
			switch f.Opcode {
			case frame.OpText, frame.OpBinary:
				if string(f.Payload) == "quit" {
					return // abrupt TCP close
				}
				if p.WriteErr(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: f.Opcode}, f.Payload)) != nil {
					return
				}
			case frame.OpPing:
				_ = p.WriteErr(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpPong}, f.Payload))
			case frame.OpClose:
				_ = p.WriteErr(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpClose}, f.Payload))
				return
			}
		}
	})
}

func TestParkStress(t *testing.T) {
	up := parkEchoUpstream(t)
	gw := startGateway(t, relayYAML(up.URL, "ping_interval", "1200ms", "pong_timeout", "2s"))
	const n, rounds = 12, 3
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := wstest.DialRawErr(gw.Addr, "/")
			if err != nil {
				t.Error(err)
				return
			}
			c.T = t
			defer c.Conn.Close()
			jitter := func() {
				time.Sleep(relay.ParkAfter - 60*time.Millisecond + time.Duration(rand.IntN(120))*time.Millisecond)
			}
			awaitEcho := func(want string) bool {
				for {
					f, err := c.Read()
					if err != nil {
						t.Errorf("session %d: %v waiting for %q", i, err, want)
						return false
					}
					switch f.Opcode {
					case frame.OpPing:
						_ = c.WriteErr(frame.AppendFrame(nil, c.Header(true, frame.OpPong), f.Payload))
					case frame.OpText:
						if string(f.Payload) == want {
							return true
						}
					case frame.OpClose:
						t.Errorf("session %d: unexpected close %v", i, f)
						return false
					}
				}
			}
			for r := range rounds {
				jitter()
				msg := "m" + itoa(i) + "." + itoa(r)
				if c.WriteErr(frame.AppendFrame(nil, c.Header(true, frame.OpText), []byte(msg))) != nil {
					t.Errorf("session %d: write failed", i)
					return
				}
				if !awaitEcho(msg) {
					return
				}
			}
			jitter()
			switch i % 3 {
			case 0:
				_ = c.WriteErr(frame.AppendFrame(nil, c.Header(true, frame.OpClose), wstest.ClosePayload(1000, "bye")))
				for {
					f, err := c.Read()
					if err != nil {
						t.Errorf("session %d: %v waiting for close", i, err)
						return
					}
					if f.Opcode == frame.OpClose {
						return
					}
				}
			case 1:
				c.Conn.Close()
			case 2:
				_ = c.WriteErr(frame.AppendFrame(nil, c.Header(true, frame.OpText), []byte("quit")))
				for {
					f, err := c.Read()
					if err != nil {
						t.Errorf("session %d: %v waiting for close after upstream gone", i, err)
						return
					}
					if f.Opcode == frame.OpClose {
						_ = c.WriteErr(frame.AppendFrame(nil, c.Header(true, frame.OpClose), f.Payload))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(8 * time.Second)
	for gw.active.Load() != 0 {
		if time.Now().After(deadline) {
			p, l := parkedLegs(gw.Gateway)
			t.Fatalf("%d sessions still open (%d of %d legs parked)", gw.active.Load(), p, l)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Entries of finished legs would be a leak (legs of other tests'
	// sessions still running may be there legitimately).
	if left := gw.poll.Watching(); left != 0 {
		t.Errorf("%d poller entries of finished legs left after every session ended", left)
	}
}

// cutSession (shutdown_grace) on a session whose legs are parked with no
// timers: a closed descriptor leaves the poller without an event, so the
// cut must resume the legs itself, and the session ends.
func TestParkCutSession(t *testing.T) {
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL))
	c := wstest.DialRaw(t, gw.Addr, "/")
	defer c.Conn.Close()
	_ = recvPeer(t, ups)
	waitParked(t, gw.Gateway, 2, relay.ParkAfter+3*time.Second)
	for _, s := range gw.reg.list() {
		s.Cut()
	}
	deadline := time.Now().Add(3 * time.Second)
	for gw.active.Load() != 0 {
		if time.Now().After(deadline) {
			p, l := parkedLegs(gw.Gateway)
			t.Fatalf("cut session never ended: %d of %d legs still parked", p, l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

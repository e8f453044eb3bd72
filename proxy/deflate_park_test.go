//go:build unix

package proxy

// Compressed sessions park like others and hold no inflater while they
// are idle (README "Compression": inflaters are pooled between messages).

import (
	"bytes"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/internal/relay"
	"wsgate/internal/wstest"
)

func TestDeflateParkedSessionsHoldNoInflater(t *testing.T) {
	for _, tc := range []struct {
		name, answer, takeover string
	}{
		{"no_context_takeover", noTakeover, "false"},
		{"context_takeover", "permessage-deflate", "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, ch := deflateUpstream(t, tc.answer)
			gw := startGateway(t, relayYAML(up.URL, "permessage_deflate", "{context_takeover: "+tc.takeover+"}"))
			const n = 20
			cs := make([]*wstest.Peer, n)
			us := make([]*wstest.Peer, n)
			text := bytes.Repeat([]byte(`{"k":"some value","n":12345} `), 1500) // 45 KiB: more than a window
			z := deflateMsg(t, text)
			for i := range cs {
				a := wstest.MustHandshake(t, gw.Addr, "", nil, "Sec-WebSocket-Extensions: permessage-deflate")
				if a.Peer == nil {
					t.Fatalf("handshake: %d", a.Status())
				}
				cs[i], us[i] = a.Peer, recvPeer(t, ch)
				cs[i].Rsv, us[i].Rsv = frame.Rsv1, frame.Rsv1
				sendRsv(cs[i], true, frame.OpText, frame.Rsv1, z)
				if f := us[i].Next(); f.Rsv != frame.Rsv1 || !bytes.Equal(f.Payload, z) {
					t.Fatalf("upstream %d got %v", i, f)
				}
				sendRsv(us[i], true, frame.OpText, frame.Rsv1, z)
				if f := cs[i].Next(); f.Rsv != frame.Rsv1 || !bytes.Equal(f.Payload, z) {
					t.Fatalf("client %d got %v", i, f)
				}
			}
			waitParked(t, gw.Gateway, 2*n, relay.ParkAfter+3*time.Second)
			if got := relay.InflatersInUse(); got != 0 {
				t.Fatalf("%d inflaters held by %d parked sessions, want 0", got, n)
			}
			// A compressed message half-sent: its inflater is held while
			// the leg waits (and parks) between its fragments, and given
			// back once the message ends.
			sendRsv(cs[0], false, frame.OpText, frame.Rsv1, z[:len(z)/2])
			if f := us[0].Next(); f.Rsv != frame.Rsv1 || f.Fin {
				t.Fatalf("upstream got %v", f)
			}
			waitParked(t, gw.Gateway, 2*n, relay.ParkAfter+3*time.Second)
			if got := relay.InflatersInUse(); got != 1 {
				t.Fatalf("%d inflaters held with one compressed message in flight, want 1", got)
			}
			sendRsv(cs[0], true, frame.OpContinuation, 0, z[len(z)/2:])
			if f := us[0].Next(); f.Rsv != 0 || !f.Fin {
				t.Fatalf("upstream got %v", f)
			}
			waitFor(t, "the inflater to go back", func() bool { return relay.InflatersInUse() == 0 })
			// The session goes on: the next compressed message (with
			// context takeover, against the kept dictionary) passes.
			sendRsv(cs[0], true, frame.OpText, frame.Rsv1, deflateMsg(t, []byte("after the park")))
			if f := us[0].Next(); f.Rsv != frame.Rsv1 {
				t.Fatalf("upstream got %v", f)
			}
			for i := range cs {
				cs[i].SendClose(1000, "")
				us[i].ExpectClose(1000, "")
				us[i].SendClose(1000, "")
				cs[i].ExpectClose(1000, "")
			}
			waitFor(t, "the sessions to end", func() bool { return gw.Sessions() == 0 })
			if got := relay.InflatersInUse(); got != 0 {
				t.Fatalf("%d inflaters held after every session ended", got)
			}
		})
	}
}

package proxy

import (
	"bytes"
	"fmt"
	"testing"

	"wsgate/frame"
	"wsgate/internal/wstest"
)

// A burst of pipelined frames, written by the client in one go, is relayed
// in order and intact even though the gateway coalesces the small frames it
// already holds into fewer writes: a ping in the burst is not overtaken by
// the data frames after it, a fragmented message keeps its fragments, and a
// violation at the end of the burst is reported only after the frames
// before it were delivered (RFC 6455 §5.4: frames are delivered in order).
func TestRelayCoalescedBurst(t *testing.T) {
	got := make(chan []wstest.Frame, 1)
	up := newRawUpstream(t, func(u *wstest.Peer) {
		var frames []wstest.Frame
		for {
			f, err := u.Read()
			if err != nil {
				got <- frames
				return
			}
			frames = append(frames, f)
			if f.Opcode == frame.OpClose {
				u.Write(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpClose}, f.Payload))
				got <- frames
				return
			}
		}
	})
	gw := startGateway(t, relayYAML(up.URL))
	c := wstest.DialRaw(t, gw.Addr, "/")

	var burst []byte
	var want []wstest.Frame
	add := func(fin bool, op frame.Opcode, payload []byte) {
		burst = frame.AppendFrame(burst, c.Header(fin, op), payload)
		want = append(want, wstest.Frame{Header: frame.Header{Fin: fin, Opcode: op}, Payload: payload})
	}
	for i := 0; i < 300; i++ {
		switch {
		case i%50 == 25:
			add(true, frame.OpPing, []byte(fmt.Sprintf("ping %d", i)))
		case i%40 == 10:
			add(false, frame.OpText, []byte("frag-a "))
			add(false, frame.OpContinuation, []byte("frag-b "))
			add(true, frame.OpContinuation, []byte(fmt.Sprintf("frag-c %d", i)))
		case i%3 == 0:
			add(true, frame.OpBinary, bytes.Repeat([]byte{byte(i)}, i*7))
		default:
			add(true, frame.OpText, []byte(fmt.Sprintf("message %d", i)))
		}
	}
	// The burst ends with an unmasked frame: a protocol error.
	burst = frame.AppendFrame(burst, frame.Header{Fin: true, Opcode: frame.OpText}, []byte("unmasked"))
	c.Write(burst)

	code, _, _ := c.ReadClose()
	if code != 1002 {
		t.Fatalf("client got close %d, want 1002", code)
	}
	frames := <-got
	if len(frames) != len(want)+1 {
		t.Fatalf("upstream got %d frames, want %d data/control frames and a Close", len(frames), len(want))
	}
	for i, w := range want {
		f := frames[i]
		if f.Fin != w.Fin || f.Opcode != w.Opcode || !bytes.Equal(f.Payload, w.Payload) {
			t.Fatalf("frame %d: got %v, want fin=%v op=%v %q", i, f, w.Fin, w.Opcode, w.Payload)
		}
		if !f.Masked {
			t.Fatalf("frame %d reached the upstream unmasked", i)
		}
	}
	if last := frames[len(want)]; last.Opcode != frame.OpClose || closeCodeOf(last.Payload) != 1001 {
		t.Fatalf("last frame %v, want Close 1001", last)
	}
}

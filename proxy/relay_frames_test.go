package proxy

// What the relay does to frames it passes on (docs/relay.md): client
// frames are re-masked with fresh keys, upstream frames go out unmasked,
// fragmentation is preserved as sent, and a leg that must end inside a
// large frame is truncated.

import (
	"bytes"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/internal/wstest"
)

// sentFrame is a frame a raw peer sends and the other side must see.
type sentFrame struct {
	fin     bool
	op      frame.Opcode
	payload []byte
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i>>9) ^ seed
	}
	return b
}

// A mix of small and large (streamed) frames, data and control, fragmented
// and not: every length encoding of RFC 6455 §5.2.
func frameMix() []sentFrame {
	return []sentFrame{
		{true, frame.OpText, []byte("hello")},
		{true, frame.OpText, nil},
		{true, frame.OpBinary, pattern(125, 1)},
		{true, frame.OpBinary, pattern(126, 2)},
		{true, frame.OpBinary, pattern(16<<10, 3)},       // largest frame checked whole
		{true, frame.OpBinary, pattern(16<<10+1, 4)},     // smallest streamed frame
		{true, frame.OpBinary, pattern(70000, 5)},        // 64-bit length
		{true, frame.OpPing, []byte("ping payload")},     // relayed end to end
		{true, frame.OpPong, []byte("unsolicited pong")}, // likewise
		{true, frame.OpPing, nil},
		// A fragmented text message with a code point split across
		// fragments, an empty fragment and control frames in between.
		{false, frame.OpText, []byte("ab\xc3")},
		{true, frame.OpPing, []byte("x")},
		{false, frame.OpContinuation, []byte("\xa9cd")},
		{false, frame.OpContinuation, nil},
		{true, frame.OpPong, []byte("y")},
		{true, frame.OpContinuation, []byte("ef")},
		// A fragmented binary message of streamed and small fragments.
		{false, frame.OpBinary, pattern(20000, 6)},
		{true, frame.OpPing, []byte("z")},
		{false, frame.OpContinuation, pattern(40000, 7)},
		{false, frame.OpContinuation, pattern(5, 8)},
		{true, frame.OpContinuation, pattern(17000, 9)},
		{true, frame.OpBinary, nil},
		// A large text frame: streamed and validated chunk by chunk.
		{true, frame.OpText, bytes.Repeat([]byte("añ€😀"), 10000)},
	}
}

// Client -> upstream: every frame arrives masked with a key that is not the
// client's and differs from frame to frame (control frames and the Close
// too), payloads intact, FIN/opcode sequence as sent.
func TestRelayRemaskAndFragmentsClientToUpstream(t *testing.T) {
	t.Parallel()
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"))
	c := wstest.DialRaw(t, gw.Addr, "/")
	c.Fixed = true // one key for every client frame
	u := recvPeer(t, ups)
	mix := frameMix()
	for _, f := range mix {
		c.Send(f.fin, f.op, f.payload)
	}
	c.SendClose(4000, "bye")
	keys := map[[4]byte]int{}
	check := func(i int, f wstest.Frame) {
		if !f.Masked {
			t.Errorf("frame %d %v reached the upstream unmasked", i, f)
			return
		}
		if f.Key == c.Key {
			t.Errorf("frame %d reached the upstream with the client's key %x", i, f.Key)
		}
		if j, dup := keys[f.Key]; dup {
			t.Errorf("frames %d and %d reached the upstream with the same key %x", j, i, f.Key)
		}
		keys[f.Key] = i
	}
	for i, want := range mix {
		got := u.Next()
		check(i, got)
		if got.Fin != want.fin || got.Opcode != want.op || got.Rsv != 0 || !bytes.Equal(got.Payload, want.payload) {
			t.Fatalf("frame %d: upstream got %v, want fin=%v op=%v len=%d", i, got, want.fin, want.op, len(want.payload))
		}
	}
	cl := u.Next()
	check(len(mix), cl)
	if cl.Opcode != frame.OpClose || !bytes.Equal(cl.Payload, wstest.ClosePayload(4000, "bye")) {
		t.Fatalf("upstream got %v, want Close(4000, bye)", cl)
	}
	u.SendClose(4000, "bye")
	u.Conn.Close()
	c.ExpectClose(4000, "bye")
	c.ExpectEOF(2 * time.Second)
	expectLog(t, gw, "reason", "normal", "c2u_frames", itoa(len(mix)+1))
}

// Upstream -> client: frames arrive unmasked, fragmentation and control
// frames as sent.
func TestRelayFragmentsUpstreamToClient(t *testing.T) {
	t.Parallel()
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	mix := frameMix()
	for _, f := range mix {
		u.Send(f.fin, f.op, f.payload)
	}
	u.SendClose(4001, "upstream bye")
	for i, want := range mix {
		got := c.Next()
		if got.Masked || got.Fin != want.fin || got.Opcode != want.op || got.Rsv != 0 || !bytes.Equal(got.Payload, want.payload) {
			t.Fatalf("frame %d: client got %v, want unmasked fin=%v op=%v len=%d", i, got, want.fin, want.op, len(want.payload))
		}
	}
	c.ExpectClose(4001, "upstream bye")
	c.SendClose(4001, "ok")
	u.ExpectClose(4001, "ok")
	u.Conn.Close()
	c.ExpectEOF(2 * time.Second)
	expectLog(t, gw, "reason", "normal", "closed_by", "upstream", "u2c_frames", itoa(len(mix)+1))
}

// A leg that must end inside a large (streamed) frame it is receiving gets
// a TCP close, not a Close frame, and the access log says truncated. A
// violation found before any of the frame went out still gets a clean
// Close.
func TestRelayTruncated(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("abcdefgh"), 100<<10/8)
	t.Run("bad-utf8-late", func(t *testing.T) {
		t.Parallel()
		up, ups := rawUpstreamChan(t)
		gw := startGateway(t, relayYAML(up.URL, "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"))
		c := wstest.DialRaw(t, gw.Addr, "/")
		u := recvPeer(t, ups)
		p := bytes.Clone(big)
		p[len(p)-10] = 0xff
		c.Send(true, frame.OpText, p)
		c.ExpectClose(1007, "client sent invalid UTF-8")
		u.ExpectGone()
		c.SendClose(1007, "")
		c.ExpectEOF(2 * time.Second)
		expectLog(t, gw, "reason", "truncated", "truncated", "true", "client_close_code", "1007", "upstream_close_code", "none")
	})
	t.Run("bad-utf8-first-chunk", func(t *testing.T) {
		t.Parallel()
		up, ups := rawUpstreamChan(t)
		gw := startGateway(t, relayYAML(up.URL, "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"))
		c := wstest.DialRaw(t, gw.Addr, "/")
		u := recvPeer(t, ups)
		p := bytes.Clone(big)
		p[3] = 0xff
		c.Send(true, frame.OpText, p)
		c.ExpectClose(1007, "client sent invalid UTF-8")
		code, reason, before := u.ReadClose()
		if code != 1001 || reason != "client sent invalid UTF-8" || len(before) != 0 {
			t.Errorf("upstream got %v then Close(%d, %q), want only Close(1001, ...)", before, code, reason)
		}
		expectLog(t, gw, "reason", "bad_data", "truncated", "false", "client_close_code", "1007", "upstream_close_code", "1001")
	})
	t.Run("upstream-bad-utf8-late", func(t *testing.T) {
		t.Parallel()
		up, ups := rawUpstreamChan(t)
		gw := startGateway(t, relayYAML(up.URL, "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"))
		c := wstest.DialRaw(t, gw.Addr, "/")
		u := recvPeer(t, ups)
		p := bytes.Clone(big)
		p[len(p)-10] = 0xc0
		u.Send(true, frame.OpText, p)
		u.ExpectClose(1007, "upstream sent invalid UTF-8")
		c.ExpectDropped()
		u.SendClose(1007, "")
		u.Conn.Close()
		expectLog(t, gw, "reason", "truncated", "truncated", "true", "client_close_code", "none", "upstream_close_code", "1007")
	})
	t.Run("client-gone-mid-frame", func(t *testing.T) {
		t.Parallel()
		up, ups := rawUpstreamChan(t)
		gw := startGateway(t, relayYAML(up.URL, "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"))
		c := wstest.DialRaw(t, gw.Addr, "/")
		u := recvPeer(t, ups)
		h := c.Header(true, frame.OpBinary)
		h.Length = int64(len(big))
		b := frame.AppendHeader(nil, h)
		b = append(b, big[:len(big)/2]...)
		frame.Mask(h.Key, 0, b[len(b)-len(big)/2:])
		c.Write(b)
		// Wait until the upstream has part of the frame, then vanish.
		_ = u.Conn.SetReadDeadline(time.Now().Add(relayIO))
		if hh, err := frame.ReadHeader(u.BR, frame.Rules{}); err != nil || hh.Length != int64(len(big)) {
			t.Fatalf("upstream: %v %v", hh, err)
		}
		c.Reset()
		u.ExpectDropped()
		expectLog(t, gw, "reason", "truncated", "truncated", "true", "client_close_code", "none", "upstream_close_code", "none")
	})
}

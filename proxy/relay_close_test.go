package proxy

// One end-to-end test per row of the the close-translation table (docs/relay.md) (rate
// limits, shutdown and reload/drain rows excepted): the exact code and
// reason each side receives, and the access log's reason and closed_by.
// Well-behaved peers are third-party libraries; misbehaving ones are raw
// sockets whose bytes are written here.

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"

	"wsgate/frame"
	"wsgate/internal/wstest"
)

// gorillaDial connects a gorilla/websocket client through gw.
func gorillaDial(t testing.TB, gw *testGateway) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: relayIO}
	c, _, err := d.Dial(gw.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// coderDial connects a coder/websocket client through gw. Unlike gorilla
// it accepts 1014, the default upstream_failure_code.
func coderDial(t testing.TB, gw *testGateway) *coder.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), relayIO)
	defer cancel()
	c, _, err := coder.Dial(ctx, gw.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// gorillaExpectClose reads until c's next error and checks it is the Close
// (code, text).
func gorillaExpectClose(t testing.TB, c *websocket.Conn, code int, text string) {
	t.Helper()
	for {
		_ = c.SetReadDeadline(time.Now().Add(relayIO))
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != code || ce.Text != text {
			t.Errorf("client got %v, want Close(%d, %q)", err, code, text)
		}
		return
	}
}

// coderExpectClose reads until c's next error and checks it is the Close
// (code, reason).
func coderExpectClose(t testing.TB, c *coder.Conn, code int, reason string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), relayIO)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce coder.CloseError
		if !errors.As(err, &ce) || int(ce.Code) != code || ce.Reason != reason {
			t.Errorf("client got %v, want Close(%d, %q)", err, code, reason)
		}
		return
	}
}

// Row: client sends Close(code, reason) with a legal code -> the upstream
// gets Close(code, reason), the client gets the upstream's reply.
func TestRelayCloseClientLegal(t *testing.T) {
	t.Parallel()
	for _, code := range []int{1000, 1001, 1003, 1011, 3000, 4000, 4999} {
		t.Run(itoa(code), func(t *testing.T) {
			t.Parallel()
			up := newGorillaUpstream(t, nil)
			gw := startGateway(t, relayYAML(up.URL))
			c := gorillaDial(t, gw)
			if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(relayIO))
			if _, p, err := c.ReadMessage(); err != nil || string(p) != "hi" {
				t.Fatalf("echo: %q %v", p, err)
			}
			if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(code, "bye é")); err != nil {
				t.Fatal(err)
			}
			up.expectClose(t, code, "bye é")
			gorillaExpectClose(t, c, code, "reply:bye é")
			c.Close()
			expectLog(t, gw, "reason", "normal", "closed_by", "client",
				"client_close_code", itoa(code), "client_close_reason", "reply:bye é",
				"upstream_close_code", itoa(code), "upstream_close_reason", "bye é", "truncated", "false")
		})
	}
}

// The same row with 1014, which gorilla/websocket refuses to receive: raw
// peers on both sides.
func TestRelayCloseClientLegal1014(t *testing.T) {
	t.Parallel()
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	c.SendClose(1014, "bye")
	u.ExpectClose(1014, "bye")
	u.SendClose(1014, "reply:bye")
	u.Conn.Close()
	c.ExpectClose(1014, "reply:bye")
	c.ExpectEOF(2 * time.Second)
	expectLog(t, gw, "reason", "normal", "closed_by", "client", "client_close_code", "1014",
		"client_close_reason", "reply:bye", "upstream_close_code", "1014", "upstream_close_reason", "bye")
}

// Row: client sends Close with an empty payload -> the upstream gets an
// empty Close, the client the upstream's (empty) reply.
func TestRelayCloseClientEmpty(t *testing.T) {
	t.Parallel()
	t.Run("gorilla", func(t *testing.T) {
		t.Parallel()
		up := newGorillaUpstream(t, nil)
		gw := startGateway(t, relayYAML(up.URL))
		c := gorillaDial(t, gw)
		if err := c.WriteMessage(websocket.CloseMessage, []byte{}); err != nil {
			t.Fatal(err)
		}
		// gorilla/websocket reports an empty Close payload as 1005.
		up.expectClose(t, websocket.CloseNoStatusReceived, "")
		gorillaExpectClose(t, c, websocket.CloseNoStatusReceived, "")
		c.Close()
		expectLog(t, gw, "reason", "normal", "closed_by", "client", "client_close_code", "1005", "upstream_close_code", "1005")
	})
	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		up := newGorillaUpstream(t, nil)
		gw := startGateway(t, relayYAML(up.URL))
		c := wstest.DialRaw(t, gw.Addr, "/")
		c.EchoCheck("hello")
		c.Send(true, frame.OpClose, nil)
		up.expectClose(t, websocket.CloseNoStatusReceived, "")
		f := c.Next()
		if f.Opcode != frame.OpClose || len(f.Payload) != 0 || f.Masked {
			t.Errorf("client got %v, want an empty unmasked Close", f)
		}
		c.ExpectEOF(2 * time.Second)
		expectLog(t, gw, "reason", "normal", "closed_by", "client", "client_close_code", "1005", "upstream_close_code", "1005")
	})
}

// clientViolation runs one client-misbehaviour row: a raw client sends bad,
// then must get Close(code, reason); the (gorilla) upstream must get
// Close(1001, reason); the gateway must end the client's TCP connection
// with a FIN once the client answered.
func clientViolation(t *testing.T, cfg []string, bad func(c *wstest.Peer), code int, reason, why string) {
	t.Helper()
	up := newGorillaUpstream(t, nil)
	gw := startGateway(t, relayYAML(up.URL, cfg...))
	c := wstest.DialRaw(t, gw.Addr, "/")
	c.EchoCheck("hello")
	bad(c)
	c.ExpectClose(code, reason)
	up.expectClose(t, 1001, reason)
	c.SendClose(frame.CloseCode(code), "")
	c.ExpectEOF(2 * time.Second)
	expectLog(t, gw, "reason", why, "closed_by", "gateway",
		"client_close_code", itoa(code), "client_close_reason", reason,
		"upstream_close_code", "1001", "upstream_close_reason", reason)
}

// Row: client close code illegal (0-999, 1004-1006, 1015, 1016-2999,
// >=5000) or a 1-byte payload -> 1002 / 1001.
func TestRelayCloseClientIllegalCode(t *testing.T) {
	t.Parallel()
	for _, code := range []frame.CloseCode{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535} {
		t.Run(itoa(code), func(t *testing.T) {
			t.Parallel()
			clientViolation(t, nil, func(c *wstest.Peer) { c.SendClose(code, "x") },
				1002, "client protocol error", "protocol_error")
		})
	}
	t.Run("one-byte", func(t *testing.T) {
		t.Parallel()
		clientViolation(t, nil, func(c *wstest.Peer) { c.Send(true, frame.OpClose, []byte{0x03}) },
			1002, "client protocol error", "protocol_error")
	})
}

// Row: client protocol error (unmasked, RSV, opcode, control >125,
// fragmented control, continuation order) -> 1002 / 1001.
func TestRelayCloseClientProtocolError(t *testing.T) {
	t.Parallel()
	raw := func(h frame.Header, p []byte) func(c *wstest.Peer) {
		return func(c *wstest.Peer) {
			if h.Masked {
				h.Key = frame.NewKey()
			}
			c.Write(frame.AppendFrame(nil, h, p))
		}
	}
	masked := func(fin bool, rsv uint8, op frame.Opcode, n int) func(c *wstest.Peer) {
		return raw(frame.Header{Fin: fin, Rsv: rsv, Opcode: op, Masked: true}, bytes.Repeat([]byte{'a'}, n))
	}
	seq := func(fs ...func(c *wstest.Peer)) func(c *wstest.Peer) {
		return func(c *wstest.Peer) {
			for _, f := range fs {
				f(c)
			}
		}
	}
	cases := map[string]func(c *wstest.Peer){
		"unmasked-text":   raw(frame.Header{Fin: true, Opcode: frame.OpText}, []byte("hi")),
		"unmasked-ping":   raw(frame.Header{Fin: true, Opcode: frame.OpPing}, []byte("hi")),
		"unmasked-close":  raw(frame.Header{Fin: true, Opcode: frame.OpClose}, wstest.ClosePayload(1000, "")),
		"rsv1":            masked(true, frame.Rsv1, frame.OpText, 2),
		"rsv2":            masked(true, frame.Rsv2, frame.OpBinary, 2),
		"rsv3":            masked(true, frame.Rsv3, frame.OpText, 0),
		"rsv1-ping":       masked(true, frame.Rsv1, frame.OpPing, 0),
		"ping-126":        masked(true, 0, frame.OpPing, 126),
		"pong-126":        masked(true, 0, frame.OpPong, 126),
		"close-126":       raw(frame.Header{Fin: true, Opcode: frame.OpClose, Masked: true}, wstest.ClosePayload(1000, strings.Repeat("a", 124))),
		"ping-fragmented": masked(false, 0, frame.OpPing, 1),
		"close-fragment":  raw(frame.Header{Opcode: frame.OpClose, Masked: true}, wstest.ClosePayload(1000, "")),
		"cont-no-start":   masked(true, 0, frame.OpContinuation, 2),
		"cont-no-start-0": masked(false, 0, frame.OpContinuation, 0),
		"text-in-text":    seq(masked(false, 0, frame.OpText, 2), masked(true, 0, frame.OpText, 2)),
		"binary-in-text":  seq(masked(false, 0, frame.OpText, 2), masked(false, 0, frame.OpContinuation, 2), masked(true, 0, frame.OpBinary, 2)),
		"text-in-binary":  seq(masked(false, 0, frame.OpBinary, 2), masked(true, 0, frame.OpPing, 1), masked(true, 0, frame.OpText, 2)),
		"cont-after-fin":  seq(masked(false, 0, frame.OpText, 2), masked(true, 0, frame.OpContinuation, 2), masked(true, 0, frame.OpContinuation, 2)),
		"non-minimal-len": func(c *wstest.Peer) { c.Write([]byte{0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'}) },
		"len-top-bit":     func(c *wstest.Peer) { c.Write([]byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}) },
	}
	for op := frame.Opcode(3); op <= 0xF; op++ {
		if op.IsReserved() {
			cases["opcode-"+itoa(int(op))] = masked(true, 0, op, 1)
		}
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clientViolation(t, nil, bad, 1002, "client protocol error", "protocol_error")
		})
	}
}

// Row: client text or close reason not UTF-8 -> 1007 / 1001. Small frames
// are validated whole before they are forwarded, so nothing of the bad
// frame reaches the upstream.
func TestRelayCloseClientBadUTF8(t *testing.T) {
	t.Parallel()
	cases := map[string]func(c *wstest.Peer){
		"single-frame": func(c *wstest.Peer) { c.Send(true, frame.OpText, []byte("ok \xff ok")) },
		"surrogate":    func(c *wstest.Peer) { c.Send(true, frame.OpText, []byte("\xed\xa0\x80")) },
		"overlong":     func(c *wstest.Peer) { c.Send(true, frame.OpText, []byte("\xc0\xaf")) },
		"truncated":    func(c *wstest.Peer) { c.Send(true, frame.OpText, []byte("ok \xe2\x82")) },
		"split-across-fragments": func(c *wstest.Peer) {
			c.Send(false, frame.OpText, []byte("euro \xe2\x82"))
			c.Send(false, frame.OpContinuation, nil)
			c.Send(true, frame.OpContinuation, []byte("\x28 bad"))
		},
		"ends-inside-code-point": func(c *wstest.Peer) {
			c.Send(false, frame.OpText, []byte("euro \xe2"))
			c.Send(true, frame.OpContinuation, []byte("\x82"))
		},
		"close-reason": func(c *wstest.Peer) { c.SendClose(1000, "bye \xc3\x28") },
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clientViolation(t, nil, bad, 1007, "client sent invalid UTF-8", "bad_data")
		})
	}
}

// Row: client frame or message over the cap -> 1009 / 1001. The cap is
// checked from the header, before any payload is read.
func TestRelayCloseClientTooBig(t *testing.T) {
	t.Parallel()
	cfg := []string{"max_frame_bytes", "1KiB", "max_message_bytes", "4KiB"}
	cases := map[string]func(c *wstest.Peer){
		"frame": func(c *wstest.Peer) { c.Send(true, frame.OpBinary, make([]byte, 1025)) },
		// Only the header: the gateway must not wait for a payload.
		"frame-header-only": func(c *wstest.Peer) {
			c.Write(frame.AppendHeader(nil, frame.Header{Fin: true, Opcode: frame.OpBinary, Masked: true, Length: 1 << 40}))
		},
		"message": func(c *wstest.Peer) {
			c.Send(false, frame.OpText, bytes.Repeat([]byte{'a'}, 1000))
			for range 3 {
				c.Send(false, frame.OpContinuation, bytes.Repeat([]byte{'a'}, 1000))
			}
			c.Send(true, frame.OpContinuation, bytes.Repeat([]byte{'a'}, 97)) // 4097 bytes in all
		},
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clientViolation(t, cfg, bad, 1009, "client message too big", "too_big")
		})
	}
}

// Row: client frame or message over the cap, from a client that keeps
// flooding while the gateway closes it (docs/relay.md "Lingering close"): the client
// must still read the whole 1009 Close. One that stops and answers gets a
// FIN; one that floods on regardless is cut off after close_timeout.
func TestRelayCloseClientFloodLinger(t *testing.T) {
	t.Parallel()
	frameHdr := frame.Header{Fin: true, Opcode: frame.OpBinary, Masked: true, Key: frame.NewKey()}
	big := frame.AppendFrame(nil, frameHdr, make([]byte, 256<<10)) // over max_frame_bytes
	frag := frame.AppendFrame(nil, frame.Header{Opcode: frame.OpBinary, Masked: true, Key: frame.NewKey()}, make([]byte, 16<<10))
	cont := frame.AppendFrame(nil, frame.Header{Opcode: frame.OpContinuation, Masked: true, Key: frame.NewKey()}, make([]byte, 16<<10))
	for _, tc := range []struct {
		name    string
		first   []byte // then flood
		flood   []byte
		answers bool // stops flooding once it has the Close, and answers it
	}{
		{"big-frames-answers", nil, big, true},
		{"big-frames-never-stops", nil, big, false},
		{"message-never-stops", frag, cont, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newGorillaUpstream(t, nil)
			gw := startGateway(t, relayYAML(up.URL, "max_frame_bytes", "16KiB", "max_message_bytes", "64KiB", "close_timeout", "500ms"))
			c := wstest.DialRaw(t, gw.Addr, "/")
			c.EchoCheck("hello")
			var stop atomic.Bool
			var sent atomic.Int64
			flooding := make(chan struct{})
			go func() {
				defer close(flooding)
				if tc.first != nil && c.WriteErr(tc.first) != nil {
					return
				}
				deadline := time.Now().Add(relayIO)
				for !stop.Load() && time.Now().Before(deadline) {
					if c.WriteErr(tc.flood) != nil {
						return
					}
					sent.Add(1)
				}
			}()
			// Let the flood run for a while before reading anything.
			time.Sleep(200 * time.Millisecond)
			code, reason, _ := c.ReadClose()
			got := time.Now()
			if tc.answers {
				stop.Store(true)
				<-flooding
			}
			if code != 1009 || reason != "client message too big" {
				t.Errorf("client got Close(%d, %q), want Close(1009, %q)", code, reason, "client message too big")
			}
			up.expectClose(t, 1001, "client message too big")
			if tc.answers {
				c.SendClose(1009, "")
				c.ExpectEOF(3 * time.Second)
			} else {
				// It never answers: the gateway gives up after close_timeout,
				// even though data keeps arriving.
				<-flooding
				if el := time.Since(got); el > 2*time.Second {
					t.Errorf("the flood went on for %v after the Close, want about close_timeout (500ms)", el)
				}
			}
			if n := sent.Load(); n < 2 {
				t.Errorf("the client sent only %d frames", n)
			}
			expectLog(t, gw, "reason", "too_big", "closed_by", "gateway", "client_close_code", "1009", "upstream_close_code", "1001")
		})
	}
}

// Row: client gone (EOF, reset) -> the upstream gets 1001.
func TestRelayCloseClientGone(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"fin", "reset", "mid-frame"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			up := newGorillaUpstream(t, nil)
			gw := startGateway(t, relayYAML(up.URL))
			c := wstest.DialRaw(t, gw.Addr, "/")
			c.EchoCheck("hello")
			switch how {
			case "fin":
				c.Conn.Close()
			case "reset":
				c.Reset()
			case "mid-frame":
				h := c.Header(true, frame.OpText)
				h.Length = 100
				c.Write(frame.AppendHeader(nil, h))
				c.Write([]byte("abc"))
				c.Conn.Close()
			}
			up.expectClose(t, 1001, "client gone")
			expectLog(t, gw, "reason", "client_gone", "closed_by", "client",
				"client_close_code", "none", "upstream_close_code", "1001", "upstream_close_reason", "client gone")
		})
	}
}

// Row: idle_timeout -> 1001 to both sides (gorilla/websocket peers).
// Control frames do not count as activity.
func TestRelayCloseIdle(t *testing.T) {
	t.Parallel()
	up := newGorillaUpstream(t, nil)
	gw := startGateway(t, relayYAML(up.URL, "idle_timeout", "300ms"))
	c := gorillaDial(t, gw)
	pong := make(chan string, 1)
	c.SetPongHandler(func(p string) error { pong <- p; return nil })
	start := time.Now()
	if err := c.WriteControl(websocket.PingMessage, []byte("not data"), time.Now().Add(relayIO)); err != nil {
		t.Fatal(err)
	}
	gorillaExpectClose(t, c, 1001, "idle timeout")
	if el := time.Since(start); el < 250*time.Millisecond || el > 2*time.Second {
		t.Errorf("idle close after %v, want ~300ms", el)
	}
	select {
	case p := <-pong:
		if p != "not data" {
			t.Errorf("pong %q", p)
		}
	default:
		t.Errorf("the upstream's pong did not come through")
	}
	up.expectClose(t, 1001, "idle timeout")
	c.Close()
	expectLog(t, gw, "reason", "idle", "closed_by", "gateway", "client_close_code", "1001", "client_close_reason", "idle timeout",
		"upstream_close_code", "1001", "upstream_close_reason", "idle timeout")
}

// Row: upstream sends Close(code, reason) with a legal code -> the client
// gets Close(code, reason), the upstream the client's reply.
func TestRelayCloseUpstreamLegal(t *testing.T) {
	t.Parallel()
	for _, code := range []int{1000, 1001, 1008, 1011, 1012, 1013, 3000, 4001} {
		t.Run(itoa(code), func(t *testing.T) {
			t.Parallel()
			start := make(chan struct{})
			up := newGorillaUpstream(t, func(c *websocket.Conn) {
				<-start
				_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, "upstream bye"), time.Now().Add(relayIO))
			})
			gw := startGateway(t, relayYAML(up.URL))
			c := coderDial(t, gw)
			close(start)
			coderExpectClose(t, c, code, "upstream bye")
			// coder/websocket replies with the code and reason it received.
			up.expectClose(t, code, "upstream bye")
			expectLog(t, gw, "reason", "normal", "closed_by", "upstream",
				"client_close_code", itoa(code), "client_close_reason", "upstream bye",
				"upstream_close_code", itoa(code), "upstream_close_reason", "upstream bye")
		})
	}
}

// Row: upstream gone without a close (EOF, reset) -> the client gets
// upstream_failure_code (1014 by default, or 1011 as configured).
func TestRelayCloseUpstreamGone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, failure, how string }{
		{"eof-1014", "", "fin"},
		{"reset-1014", "", "reset"},
		{"mid-frame-1014", "", "mid-frame"},
		{"eof-1011", "1011", "fin"},
		{"reset-1011", "1011", "reset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up, ups := rawUpstreamChan(t)
			var cfg []string
			if tc.failure != "" {
				cfg = []string{"server.upstream_failure_code", tc.failure}
			}
			gw := startGateway(t, relayYAML(up.URL, cfg...))
			drop := func(u *wstest.Peer) {
				switch tc.how {
				case "fin":
					u.Conn.Close()
				case "reset":
					u.Reset()
				case "mid-frame":
					u.Write([]byte{0x81, 10, 'a', 'b'})
					u.Conn.Close()
				}
			}
			if tc.failure == "1011" {
				// gorilla/websocket: the client the 1011 setting exists for.
				c := gorillaDial(t, gw)
				drop(recvPeer(t, ups))
				gorillaExpectClose(t, c, 1011, "upstream gone")
			} else {
				c := coderDial(t, gw)
				drop(recvPeer(t, ups))
				coderExpectClose(t, c, 1014, "upstream gone")
			}
			want := "1014"
			if tc.failure != "" {
				want = tc.failure
			}
			expectLog(t, gw, "reason", "upstream_gone", "closed_by", "upstream",
				"client_close_code", want, "client_close_reason", "upstream gone", "upstream_close_code", "none")
		})
	}
}

// upstreamViolation runs one upstream-misbehaviour row: a raw upstream sends
// bad; the (coder) client must get Close(1014, reason), the upstream
// Close(code, reason).
func upstreamViolation(t *testing.T, cfg []string, bad func(u *wstest.Peer), code int, reason, why string) {
	t.Helper()
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, cfg...))
	c := coderDial(t, gw)
	u := recvPeer(t, ups)
	bad(u)
	coderExpectClose(t, c, 1014, reason)
	u.ExpectClose(code, reason)
	// The client's reply to its own Close is not relayed: the upstream
	// already has the gateway's.
	u.SendClose(frame.CloseCode(code), "")
	u.Conn.Close()
	expectLog(t, gw, "reason", why, "closed_by", "gateway",
		"client_close_code", "1014", "client_close_reason", reason,
		"upstream_close_code", itoa(code), "upstream_close_reason", reason)
}

// Row: upstream protocol error (masked frame, RSV, opcode, illegal code,
// control frame rules, continuation order) -> failure code / 1002.
func TestRelayCloseUpstreamProtocolError(t *testing.T) {
	t.Parallel()
	raw := func(h frame.Header, p []byte) func(u *wstest.Peer) {
		return func(u *wstest.Peer) { u.Write(frame.AppendFrame(nil, h, p)) }
	}
	hdr := func(fin bool, rsv uint8, op frame.Opcode, n int) func(u *wstest.Peer) {
		return raw(frame.Header{Fin: fin, Rsv: rsv, Opcode: op}, bytes.Repeat([]byte{'a'}, n))
	}
	seq := func(fs ...func(u *wstest.Peer)) func(u *wstest.Peer) {
		return func(u *wstest.Peer) {
			for _, f := range fs {
				f(u)
			}
		}
	}
	cases := map[string]func(u *wstest.Peer){
		"masked-text":    raw(frame.Header{Fin: true, Opcode: frame.OpText, Masked: true, Key: frame.NewKey()}, []byte("hi")),
		"masked-close":   raw(frame.Header{Fin: true, Opcode: frame.OpClose, Masked: true, Key: frame.NewKey()}, wstest.ClosePayload(1000, "")),
		"rsv1":           hdr(true, frame.Rsv1, frame.OpText, 2),
		"rsv3-pong":      hdr(true, frame.Rsv3, frame.OpPong, 0),
		"opcode-3":       hdr(true, 0, 3, 0),
		"opcode-11":      hdr(true, 0, 11, 1),
		"ping-126":       hdr(true, 0, frame.OpPing, 126),
		"ping-fragment":  hdr(false, 0, frame.OpPing, 0),
		"cont-no-start":  hdr(true, 0, frame.OpContinuation, 1),
		"text-in-binary": seq(hdr(false, 0, frame.OpBinary, 1), hdr(true, 0, frame.OpText, 1)),
		"one-byte-close": raw(frame.Header{Fin: true, Opcode: frame.OpClose}, []byte{3}),
	}
	for _, code := range []frame.CloseCode{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000} {
		cases["close-"+itoa(code)] = raw(frame.Header{Fin: true, Opcode: frame.OpClose}, wstest.ClosePayload(code, ""))
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			upstreamViolation(t, nil, bad, 1002, "upstream protocol error", "protocol_error")
		})
	}
}

// Row: upstream protocol error, bad UTF-8 -> failure code / 1007.
func TestRelayCloseUpstreamBadUTF8(t *testing.T) {
	t.Parallel()
	cases := map[string]func(u *wstest.Peer){
		"single-frame": func(u *wstest.Peer) { u.Send(true, frame.OpText, []byte("a\xffb")) },
		"split-across-fragments": func(u *wstest.Peer) {
			u.Send(false, frame.OpText, []byte("\xf0\x9f"))
			u.Send(true, frame.OpContinuation, []byte("\x98\x28"))
		},
		"ends-inside-code-point": func(u *wstest.Peer) { u.Send(true, frame.OpText, []byte("\xf0\x9f\x98")) },
		"close-reason":           func(u *wstest.Peer) { u.SendClose(1000, "\xe2\x28\xa1") },
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			upstreamViolation(t, nil, bad, 1007, "upstream sent invalid UTF-8", "bad_data")
		})
	}
}

// Row: upstream message over the cap -> failure code / 1009.
func TestRelayCloseUpstreamTooBig(t *testing.T) {
	t.Parallel()
	cfg := []string{"max_frame_bytes", "1KiB", "max_message_bytes", "2KiB"}
	cases := map[string]func(u *wstest.Peer){
		"frame": func(u *wstest.Peer) { u.Send(true, frame.OpBinary, make([]byte, 1025)) },
		"message": func(u *wstest.Peer) {
			u.Send(false, frame.OpBinary, make([]byte, 1024))
			u.Send(false, frame.OpContinuation, make([]byte, 1024))
			u.Send(true, frame.OpContinuation, make([]byte, 1))
		},
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			upstreamViolation(t, cfg, bad, 1009, "upstream message too big", "too_big")
		})
	}
}

// A client Close that the upstream never answers: after close_timeout the
// client still gets a Close echoing its code, and both legs are closed.
func TestRelayCloseUpstreamNoReply(t *testing.T) {
	t.Parallel()
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, "close_timeout", "300ms"))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	start := time.Now()
	c.SendClose(4321, "client bye")
	u.ExpectClose(4321, "client bye")
	// The upstream goes on sending data but never a Close.
	u.Send(true, frame.OpText, []byte("ignored"))
	c.ExpectClose(4321, "client bye")
	if el := time.Since(start); el < 250*time.Millisecond || el > 2*time.Second {
		t.Errorf("echo after %v, want ~close_timeout (300ms)", el)
	}
	c.ExpectEOF(2 * time.Second)
	u.ExpectEOF(2 * time.Second)
	expectLog(t, gw, "reason", "normal", "closed_by", "client",
		"client_close_code", "4321", "client_close_reason", "client bye", "upstream_close_code", "4321")
}

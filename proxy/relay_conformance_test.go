package proxy

// Conformance with what a direct RFC 6455 server does (README "Close
// translation"), found by Autobahn|Testsuite's fuzzingclient:
//
//   - a Close frame that is itself invalid still ends the peer's sending:
//     the gateway answers and closes the TCP connection at once, on either
//     leg, instead of waiting close_timeout for a second Close (Autobahn
//     7.3.x, 7.5.1, 7.9.x, 7.13.x);
//   - a client's protocol error does not swallow what the upstream sent
//     before it saw the gateway's Close: the upstream is closed first and
//     its data is relayed until its reply, then the client gets its 1002
//     (Autobahn 3.2–3.4, 4.1.3–4.1.5, 4.2.3–4.2.5, 5.15);
//   - churn: every session closed by its client with a close handshake ends
//     cleanly (Close reply, then FIN), however many run at once.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/internal/relay"
	"wsgate/internal/wstest"
)

// invalidCloses are Close payloads that are invalid whichever peer sends
// them, with the code the gateway answers (1002, or 1007 for a reason that
// is not UTF-8). 1014 is legal from both peers (see TestRelayCloseClientLegal1014).
var invalidCloses = []struct {
	name    string
	payload []byte
	code    int
}{
	{"one-byte", []byte{0x03}, 1002},
	{"reason-124-bytes", wstest.ClosePayload(1000, strings.Repeat("r", 124)), 1002},
	{"reason-not-utf8", wstest.ClosePayload(1000, "bye \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"), 1007},
	{"code-0", wstest.ClosePayload(0, ""), 1002},
	{"code-999", wstest.ClosePayload(999, ""), 1002},
	{"code-1004", wstest.ClosePayload(1004, ""), 1002},
	{"code-1005", wstest.ClosePayload(1005, ""), 1002},
	{"code-1006", wstest.ClosePayload(1006, ""), 1002},
	{"code-1015", wstest.ClosePayload(1015, ""), 1002},
	{"code-1016", wstest.ClosePayload(1016, ""), 1002},
	{"code-1100", wstest.ClosePayload(1100, ""), 1002},
	{"code-2000", wstest.ClosePayload(2000, ""), 1002},
	{"code-2999", wstest.ClosePayload(2999, ""), 1002},
	{"code-5000", wstest.ClosePayload(5000, ""), 1002},
	{"code-65535", wstest.ClosePayload(65535, ""), 1002},
}

// closedAtOnce is how soon after its answer the gateway must end the TCP
// connection of a peer whose Close was invalid. close_timeout is set far
// above it, so a gateway that waits for a second Close fails.
const closedAtOnce = time.Second

// expectEndAfterClose reads p's Close frame (code), then checks that the
// gateway ends the connection (FIN) within closedAtOnce of it, without p
// sending anything more.
func expectEndAfterClose(t *testing.T, p *wstest.Peer, code int) {
	t.Helper()
	got, _, _ := p.ReadClose()
	answered := time.Now()
	if got != code {
		t.Errorf("%s got Close(%d), want %d", p.Role(), got, code)
	}
	_ = p.Conn.SetReadDeadline(answered.Add(5 * time.Second))
	var buf [512]byte
	for {
		_, err := p.BR.Read(buf[:])
		if err == nil {
			continue
		}
		if el := time.Since(answered); !errors.Is(err, io.EOF) || el > closedAtOnce {
			t.Errorf("%s: connection ended with %v %v after the gateway's Close, want EOF within %v",
				p.Role(), err, el.Round(time.Millisecond), closedAtOnce)
		}
		return
	}
}

func TestInvalidCloseFromClientEndsAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range invalidCloses {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newGorillaUpstream(t, nil)
			gw := startGateway(t, relayYAML(up.URL, "close_timeout", "10s"))
			c := wstest.DialRaw(t, gw.Addr, "/")
			c.EchoCheck("hello")
			c.Send(true, frame.OpClose, tc.payload)
			expectEndAfterClose(t, c, tc.code)
			up.expectClose(t, 1001, clientReason(tc.code))
		})
	}
}

func TestInvalidCloseFromUpstreamEndsAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range invalidCloses {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up, ups := rawUpstreamChan(t)
			gw := startGateway(t, relayYAML(up.URL, "close_timeout", "10s"))
			c := wstest.DialRaw(t, gw.Addr, "/")
			u := recvPeer(t, ups)
			u.Write(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpClose}, tc.payload))
			expectEndAfterClose(t, u, tc.code)
			// The client gets upstream_failure_code and completes its
			// close handshake as usual.
			c.ExpectClose(1014, upstreamReason(tc.code))
			c.SendClose(1014, "")
			c.ExpectEOF(2 * time.Second)
		})
	}
}

// A client sends a valid message and then a bad frame in one write: a
// direct server echoes the message before it reads the bad frame, and so
// must the gateway's upstream. The echo reaches the client before its
// 1002 (or 1007), every time.
func TestClientErrorKeepsUpstreamEcho(t *testing.T) {
	t.Parallel()
	bad := map[string]struct {
		frame  func(p *wstest.Peer) []byte
		code   int
		reason string
	}{
		"rsv1": {func(p *wstest.Peer) []byte {
			h := p.Header(true, frame.OpText)
			h.Rsv = frame.Rsv1
			return frame.AppendFrame(nil, h, []byte("x"))
		}, 1002, "client protocol error"},
		"unmasked": {func(p *wstest.Peer) []byte {
			return frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpText}, []byte("x"))
		}, 1002, "client protocol error"},
		"continuation-first": {func(p *wstest.Peer) []byte {
			return frame.AppendFrame(nil, p.Header(true, frame.OpContinuation), []byte("x"))
		}, 1002, "client protocol error"},
		"bad-utf8": {func(p *wstest.Peer) []byte {
			return frame.AppendFrame(nil, p.Header(true, frame.OpText), []byte("a\xffb"))
		}, 1007, "client sent invalid UTF-8"},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newGorillaUpstream(t, nil)
			gw := startGateway(t, relayYAML(up.URL))
			for i := range 50 {
				c := wstest.DialRaw(t, gw.Addr, "/")
				msg := fmt.Sprintf("message %d", i)
				b := frame.AppendFrame(nil, c.Header(true, frame.OpText), []byte(msg))
				c.Write(append(b, tc.frame(c)...))
				code, reason, before := c.ReadClose()
				if len(before) != 1 || string(before[0].Payload) != msg {
					t.Fatalf("run %d: frames before the Close %v, want the echo of %q", i, before, msg)
				}
				if code != tc.code || reason != tc.reason {
					t.Fatalf("run %d: Close(%d, %q), want Close(%d, %q)", i, code, reason, tc.code, tc.reason)
				}
				up.expectClose(t, 1001, tc.reason)
				c.SendClose(frame.CloseCode(code), "")
				c.ExpectEOF(2 * time.Second)
			}
		})
	}
}

// The upstream's reply may never come: the client still gets its 1002
// within close_timeout.
func TestClientErrorUpstreamNoReply(t *testing.T) {
	t.Parallel()
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, "close_timeout", "300ms"))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	start := time.Now()
	c.Write(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpText}, []byte("unmasked")))
	u.ExpectClose(1001, "client protocol error")
	// Data sent before the upstream saw our Close still goes through.
	u.Send(true, frame.OpText, []byte("in flight"))
	code, _, before := c.ReadClose()
	if code != 1002 || len(before) != 1 || string(before[0].Payload) != "in flight" {
		t.Errorf("client got %v then Close(%d), want the message then 1002", before, code)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("1002 after %v, want about close_timeout (300ms)", el)
	}
	expectLog(t, gw, "reason", "protocol_error", "closed_by", "gateway", "client_close_code", "1002")
}

// churnSession opens one session through addr, echoes one message, closes
// it with a close handshake and reports what was not clean: no echo, no
// Close reply, or anything but a FIN after it, within 5 s.
func churnSession(addr string, i int) error {
	p, err := wstest.DialRawErr(addr, "/")
	if err != nil {
		return err
	}
	defer p.Conn.Close()
	_ = p.Conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := fmt.Appendf(nil, "churn %d", i)
	if i%2 == 1 {
		goto close // every other session closes right after its handshake
	}
	if _, err := p.Conn.Write(frame.AppendFrame(nil, p.Header(true, frame.OpText), msg)); err != nil {
		return err
	}
	if f, err := p.Read(); err != nil || string(f.Payload) != string(msg) {
		return fmt.Errorf("echo: %v %v", f, err)
	}
close:
	if _, err := p.Conn.Write(frame.AppendFrame(nil, p.Header(true, frame.OpClose), wstest.ClosePayload(1000, "bye"))); err != nil {
		return err
	}
	if f, err := p.Read(); err != nil || f.Opcode != frame.OpClose {
		return fmt.Errorf("no Close reply: %v %v", f, err)
	}
	_ = p.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [64]byte
	if n, err := p.BR.Read(buf[:]); !errors.Is(err, io.EOF) {
		return fmt.Errorf("after the Close reply: %d bytes, %v (want a FIN)", n, err)
	}
	return nil
}

// TestChurnCleanEnds drives bounded churn through the gateway, to the
// built-in echo (a pipe) and to a TCP upstream, beside long-lived echo
// sessions, and counts the sessions that did not end cleanly: zero.
func TestChurnCleanEnds(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("churn: not in -short")
	}
	up := newGorillaUpstream(t, nil)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() { // the upstream records every Close: take them
		for {
			select {
			case <-up.Closes:
			case <-done:
				return
			}
		}
	}()
	for _, upstream := range []string{"builtin:echo", up.URL} {
		t.Run(strings.SplitN(upstream, ":", 2)[0], func(t *testing.T) {
			gw := startGateway(t, relayYAML(upstream, "server.max_pending_per_ip", "0"))
			// An echo workload beside the churn.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 2 {
				c := wstest.DialRaw(t, gw.Addr, "/")
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						msg := fmt.Appendf(nil, "steady %d", i)
						if err := c.WriteErr(frame.AppendFrame(nil, c.Header(true, frame.OpText), msg)); err != nil {
							t.Errorf("echo workload: %v", err)
							return
						}
						if f, err := c.Read(); err != nil || string(f.Payload) != string(msg) {
							t.Errorf("echo workload: %v %v", f, err)
							return
						}
					}
				}()
			}
			const sessions, dialers = 5000, 2
			var next, bad atomic.Int64
			var mu sync.Mutex
			var first []string
			var dw sync.WaitGroup
			for range dialers {
				dw.Add(1)
				go func() {
					defer dw.Done()
					for {
						i := next.Add(1)
						if i > sessions {
							return
						}
						if err := churnSession(gw.Addr, int(i)); err != nil {
							bad.Add(1)
							mu.Lock()
							if len(first) < 5 {
								first = append(first, err.Error())
							}
							mu.Unlock()
						}
					}
				}()
			}
			dw.Wait()
			close(stop)
			wg.Wait()
			if n := bad.Load(); n != 0 {
				t.Errorf("%d of %d sessions did not end cleanly: %v", n, sessions, first)
			}
		})
	}
}

// The race behind churn's rare unclean end, made to happen every time: the
// client's Close has been relayed, the upstream's reply is on its way to
// the client, and the client's pump looks at the session after the reply
// was marked as sent but before it was written. It must not half-close the
// client's connection then: the reply would fail with EPIPE and the client
// would see a FIN without a Close.
func TestCloseReplyBeforeHalfClose(t *testing.T) {
	t.Parallel()
	for _, upstream := range []string{"builtin:echo", "gorilla"} {
		t.Run(upstream, func(t *testing.T) {
			t.Parallel()
			if upstream == "gorilla" {
				upstream = newGorillaUpstream(t, nil).URL
			}
			gw := startGateway(t, relayYAML(upstream))
			gw.hooks.Store(&relay.Hooks{
				// The reply's write waits until the client's pump has
				// looked again (closeRelayed's pause is shorter).
				CloseWrite: func(l relay.Side) {
					if l == relay.SideClient {
						time.Sleep(60 * time.Millisecond)
					}
				},
				CloseRelayed: func(src relay.Side) {
					if src == relay.SideClient {
						time.Sleep(20 * time.Millisecond)
					}
				},
			})
			for i := range 5 {
				if err := churnSession(gw.Addr, 2*i+1); err != nil {
					t.Fatalf("session %d: %v", i, err)
				}
			}
		})
	}
}

// A wss:// client that stops reading while the upstream floods it is gone
// after write_timeout, and the upstream hears so at once: closing the
// client's TLS leg sends no close_notify alert, whose write under its own
// 5 s deadline would hold the upstream's pump (and its Close) that long.
func TestTLSStuckClientNoCloseNotifyWait(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "stuck-ca")
	leaf := ca.leaf(t, "localhost")
	up, ups := rawUpstreamChan(t)
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{leaf}, "",
		tlsRoute("relay", "/", up.URL, "write_timeout: 300ms", "max_frame_bytes: 1MiB", "max_message_bytes: 1MiB")))
	conn, err := gw.tlsDial(&tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := wstest.UpgradeRaw(conn, "localhost", "/")
	if err != nil {
		t.Fatal(err)
	}
	c.T = t
	defer conn.Close() // the client never reads again
	u := recvPeer(t, ups)
	var lastWrite atomic.Int64
	stop := make(chan struct{})
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		p := make([]byte, 256<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if u.WriteErr(frame.AppendFrame(nil, u.Header(true, frame.OpBinary), p)) != nil {
				return
			}
			lastWrite.Store(time.Now().UnixNano())
		}
	}()
	code, reason, _ := u.ReadClose()
	stalled := time.Duration(time.Now().UnixNano() - lastWrite.Load())
	close(stop)
	<-floodDone
	t.Logf("stalled %v", stalled)
	if code != 1001 || reason != "client gone" {
		t.Errorf("upstream got Close(%d, %q), want Close(1001, \"client gone\")", code, reason)
	}
	// write_timeout after the flood stalled, far from write_timeout + 5 s.
	if stalled > 3*time.Second {
		t.Errorf("upstream's Close came %v after the flood stalled, want about write_timeout (300ms)", stalled)
	}
}

// clientReason and upstreamReason are the close reasons of a violation
// whose code is 1002 or 1007 (docs/relay.md "Close translation").
func clientReason(code int) string {
	if code == 1007 {
		return "client sent invalid UTF-8"
	}
	return "client protocol error"
}

func upstreamReason(code int) string {
	if code == 1007 {
		return "upstream sent invalid UTF-8"
	}
	return "upstream protocol error"
}

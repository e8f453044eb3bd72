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
	{"reason-124-bytes", closePayload(1000, strings.Repeat("r", 124)), 1002},
	{"reason-not-utf8", closePayload(1000, "bye \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"), 1007},
	{"code-0", closePayload(0, ""), 1002},
	{"code-999", closePayload(999, ""), 1002},
	{"code-1004", closePayload(1004, ""), 1002},
	{"code-1005", closePayload(1005, ""), 1002},
	{"code-1006", closePayload(1006, ""), 1002},
	{"code-1015", closePayload(1015, ""), 1002},
	{"code-1016", closePayload(1016, ""), 1002},
	{"code-1100", closePayload(1100, ""), 1002},
	{"code-2000", closePayload(2000, ""), 1002},
	{"code-2999", closePayload(2999, ""), 1002},
	{"code-5000", closePayload(5000, ""), 1002},
	{"code-65535", closePayload(65535, ""), 1002},
}

// closedAtOnce is how soon after its answer the gateway must end the TCP
// connection of a peer whose Close was invalid. close_timeout is set far
// above it, so a gateway that waits for a second Close fails.
const closedAtOnce = time.Second

// expectEndAfterClose reads p's Close frame (code), then checks that the
// gateway ends the connection (FIN) within closedAtOnce of it, without p
// sending anything more.
func expectEndAfterClose(t *testing.T, p *rawPeer, code int) {
	t.Helper()
	got, _, _ := p.readClose()
	answered := time.Now()
	if got != code {
		t.Errorf("%s got Close(%d), want %d", p.role(), got, code)
	}
	_ = p.conn.SetReadDeadline(answered.Add(5 * time.Second))
	var buf [512]byte
	for {
		_, err := p.br.Read(buf[:])
		if err == nil {
			continue
		}
		if el := time.Since(answered); !errors.Is(err, io.EOF) || el > closedAtOnce {
			t.Errorf("%s: connection ended with %v %v after the gateway's Close, want EOF within %v",
				p.role(), err, el.Round(time.Millisecond), closedAtOnce)
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
			c := dialRaw(t, gw.Addr, "/")
			c.echoCheck("hello")
			c.send(true, frame.OpClose, tc.payload)
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
			c := dialRaw(t, gw.Addr, "/")
			u := recvPeer(t, ups)
			u.write(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpClose}, tc.payload))
			expectEndAfterClose(t, u, tc.code)
			// The client gets upstream_failure_code and completes its
			// close handshake as usual.
			c.expectClose(1014, upstreamReason(tc.code))
			c.sendClose(1014, "")
			c.expectEOF(2 * time.Second)
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
		frame  func(p *rawPeer) []byte
		code   int
		reason string
	}{
		"rsv1": {func(p *rawPeer) []byte {
			h := p.header(true, frame.OpText)
			h.Rsv = frame.Rsv1
			return frame.AppendFrame(nil, h, []byte("x"))
		}, 1002, "client protocol error"},
		"unmasked": {func(p *rawPeer) []byte {
			return frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpText}, []byte("x"))
		}, 1002, "client protocol error"},
		"continuation-first": {func(p *rawPeer) []byte {
			return frame.AppendFrame(nil, p.header(true, frame.OpContinuation), []byte("x"))
		}, 1002, "client protocol error"},
		"bad-utf8": {func(p *rawPeer) []byte {
			return frame.AppendFrame(nil, p.header(true, frame.OpText), []byte("a\xffb"))
		}, 1007, "client sent invalid UTF-8"},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newGorillaUpstream(t, nil)
			gw := startGateway(t, relayYAML(up.URL))
			for i := range 50 {
				c := dialRaw(t, gw.Addr, "/")
				msg := fmt.Sprintf("message %d", i)
				b := frame.AppendFrame(nil, c.header(true, frame.OpText), []byte(msg))
				c.write(append(b, tc.frame(c)...))
				code, reason, before := c.readClose()
				if len(before) != 1 || string(before[0].Payload) != msg {
					t.Fatalf("run %d: frames before the Close %v, want the echo of %q", i, before, msg)
				}
				if code != tc.code || reason != tc.reason {
					t.Fatalf("run %d: Close(%d, %q), want Close(%d, %q)", i, code, reason, tc.code, tc.reason)
				}
				up.expectClose(t, 1001, tc.reason)
				c.sendClose(frame.CloseCode(code), "")
				c.expectEOF(2 * time.Second)
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
	c := dialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	start := time.Now()
	c.write(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpText}, []byte("unmasked")))
	u.expectClose(1001, "client protocol error")
	// Data sent before the upstream saw our Close still goes through.
	u.send(true, frame.OpText, []byte("in flight"))
	code, _, before := c.readClose()
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
	p, err := dialRawErr(addr, "/")
	if err != nil {
		return err
	}
	defer p.conn.Close()
	_ = p.conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := fmt.Appendf(nil, "churn %d", i)
	if i%2 == 1 {
		goto close // every other session closes right after its handshake
	}
	if _, err := p.conn.Write(frame.AppendFrame(nil, p.header(true, frame.OpText), msg)); err != nil {
		return err
	}
	if f, err := p.read(); err != nil || string(f.Payload) != string(msg) {
		return fmt.Errorf("echo: %v %v", f, err)
	}
close:
	if _, err := p.conn.Write(frame.AppendFrame(nil, p.header(true, frame.OpClose), closePayload(1000, "bye"))); err != nil {
		return err
	}
	if f, err := p.read(); err != nil || f.Opcode != frame.OpClose {
		return fmt.Errorf("no Close reply: %v %v", f, err)
	}
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [64]byte
	if n, err := p.br.Read(buf[:]); !errors.Is(err, io.EOF) {
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
				c := dialRaw(t, gw.Addr, "/")
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
						if err := c.writeErr(frame.AppendFrame(nil, c.header(true, frame.OpText), msg)); err != nil {
							t.Errorf("echo workload: %v", err)
							return
						}
						if f, err := c.read(); err != nil || string(f.Payload) != string(msg) {
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
	c, err := upgradeRaw(conn, "localhost", "/")
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
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
			if u.writeErr(frame.AppendFrame(nil, u.header(true, frame.OpBinary), p)) != nil {
				return
			}
			lastWrite.Store(time.Now().UnixNano())
		}
	}()
	code, reason, _ := u.readClose()
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

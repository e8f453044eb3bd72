//go:build unix

package proxy

// Parking (park.go): a quiet plain-TCP leg gives up its goroutine and read
// buffer, and every way a session can go on or end still works from there.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wsgate/frame"
	"wsgate/internal/relay"
	"wsgate/internal/wstest"
)

// parkedLegs counts the legs of the gateway's sessions that are parked.
func parkedLegs(g *Gateway) (parked, legs int) {
	for _, s := range g.reg.list() {
		legs += 2
		parked += s.ParkedLegs()
	}
	return parked, legs
}

// waitParked waits until want legs are parked, failing after limit.
func waitParked(t *testing.T, g *Gateway, want int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		p, n := parkedLegs(g)
		if p == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d legs parked after %v, want %d", p, n, limit, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Idle sessions park both legs, and the goroutines go with them; a message
// either way resumes the leg it arrives on, is relayed intact, and the legs
// park again.
func TestParkIdleSessionsResume(t *testing.T) {
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL))
	const n = 40
	before := runtime.NumGoroutine()
	cs := make([]*wstest.Peer, n)
	us := make([]*wstest.Peer, n)
	for i := range cs {
		cs[i] = wstest.DialRaw(t, gw.Addr, "/")
		us[i] = recvPeer(t, ups)
	}
	// rawUpstream runs one handler goroutine per connection (blocked in
	// the test's own reads, not the gateway's): count the gateway's alone.
	waitParked(t, gw.Gateway, 2*n, relay.ParkAfter+3*time.Second)
	runtime.GC()
	if g := runtime.NumGoroutine() - before; g > n+5 {
		t.Errorf("%d goroutines more than before %d parked sessions, want at most %d (the test upstream's handlers)", g, n, n+5)
	}
	for i := range cs {
		msg := []byte("hello " + itoa(i))
		cs[i].Send(true, frame.OpText, msg)
		if f := us[i].Next(); f.Opcode != frame.OpText || !f.Masked || string(f.Payload) != string(msg) {
			t.Fatalf("upstream %d got %v, want the masked text %q", i, f, msg)
		}
		us[i].Send(true, frame.OpBinary, msg)
		if f := cs[i].Next(); f.Opcode != frame.OpBinary || f.Masked || string(f.Payload) != string(msg) {
			t.Fatalf("client %d got %v, want the binary %q", i, f, msg)
		}
	}
	waitParked(t, gw.Gateway, 2*n, relay.ParkAfter+3*time.Second)
	// A close handshake started by a parked client completes.
	cs[0].SendClose(4000, "bye")
	us[0].ExpectClose(4000, "bye")
	us[0].SendClose(4000, "bye")
	cs[0].ExpectClose(4000, "bye")
	expectLog(t, gw, "reason", "normal", "closed_by", "client", "client_close_code", "4000", "upstream_close_code", "4000")
}

// A parked leg's peer vanishing is seen at once (the descriptor turns
// readable with EOF): the other side gets the table's close.
func TestParkPeerGone(t *testing.T) {
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	waitParked(t, gw.Gateway, 2, relay.ParkAfter+3*time.Second)
	c.Reset()
	u.ExpectClose(1001, "client gone")
	expectLog(t, gw, "reason", "client_gone", "closed_by", "client")

	c2 := wstest.DialRaw(t, gw.Addr, "/")
	u2 := recvPeer(t, ups)
	waitParked(t, gw.Gateway, 2, relay.ParkAfter+3*time.Second)
	u2.Conn.Close()
	c2.ExpectClose(1014, "upstream gone")
}

// Timers of a parked leg still run: keepalive pings go out, a peer that
// answers stays, a silent one is found gone within ping_interval +
// pong_timeout; idle_timeout closes a parked session.
func TestParkTimers(t *testing.T) {
	t.Run("keepalive", func(t *testing.T) {
		up := newGorillaUpstream(t, nil) // answers the gateway's pings
		gw := startGateway(t, relayYAML(up.URL, "ping_interval", "1500ms", "pong_timeout", "500ms"))
		c := wstest.DialRaw(t, gw.Addr, "/")
		waitParked(t, gw.Gateway, 2, relay.ParkAfter+time.Second)
		start := time.Now()
		// The silent client is pinged once and found gone; the upstream,
		// which answers, gets 1001.
		up.expectClose(t, 1001, "client gone")
		if el := time.Since(start); el > 2*time.Second+detectSlack {
			t.Errorf("silent parked client found after %v, want within 2s (+%v)", el, detectSlack)
		}
		if f, err := c.Read(); err != nil || f.Opcode != frame.OpPing {
			t.Errorf("client: got %v %v, want the gateway's ping", f, err)
		}
	})
	t.Run("idle", func(t *testing.T) {
		up, ups := rawUpstreamChan(t)
		gw := startGateway(t, relayYAML(up.URL, "idle_timeout", "1500ms"))
		c := wstest.DialRaw(t, gw.Addr, "/")
		u := recvPeer(t, ups)
		waitParked(t, gw.Gateway, 2, relay.ParkAfter+time.Second)
		c.ExpectClose(1001, "idle timeout")
		u.ExpectClose(1001, "idle timeout")
		expectLog(t, gw, "reason", "idle")
	})
}

// Shutdown reaches parked sessions: both sides get their Close.
func TestParkShutdown(t *testing.T) {
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	waitParked(t, gw.Gateway, 2, relay.ParkAfter+3*time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gw.Shutdown(ctx)
	}()
	c.ExpectClose(1001, "gateway shutting down")
	u.ExpectClose(1001, "gateway shutting down")
	c.SendClose(1001, "")
	u.SendClose(1001, "")
	select {
	case <-done:
	case <-time.After(6 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	expectLog(t, gw, "reason", "shutdown")
}

// Third-party peers across parks: a gorilla client and upstream, a
// fragmented text message, a binary message and a ping after each park, then
// a normal close (RFC 6455 §5.4, §5.5.2, §7.1.2).
func TestParkGorillaPeers(t *testing.T) {
	up := newGorillaUpstream(t, nil) // echoes every message
	gw := startGateway(t, relayYAML(up.URL))
	c := gorillaDial(t, gw)
	pongs := make(chan string, 4)
	c.SetPongHandler(func(s string) error { pongs <- s; return nil })
	text := strings.Repeat("héllo wörld ", 1500) // ~20 KB: gorilla sends it in fragments
	bin := bytes.Repeat([]byte{0, 1, 2, 0xff}, 5000)
	for round := range 2 {
		waitParked(t, gw.Gateway, 2, relay.ParkAfter+3*time.Second)
		if err := c.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteControl(websocket.PingMessage, []byte("p"+itoa(round)), time.Now().Add(relayIO)); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteMessage(websocket.BinaryMessage, bin); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(relayIO))
		for _, want := range []struct {
			op int
			p  []byte
		}{{websocket.TextMessage, []byte(text)}, {websocket.BinaryMessage, bin}} {
			op, p, err := c.ReadMessage() // runs the pong handler on the way
			if err != nil || op != want.op || !bytes.Equal(p, want.p) {
				t.Fatalf("round %d: got op %d, %d bytes, %v; want op %d, %d bytes", round, op, len(p), err, want.op, len(want.p))
			}
		}
		select {
		case s := <-pongs:
			if s != "p"+itoa(round) {
				t.Errorf("round %d: pong %q, want %q", round, s, "p"+itoa(round))
			}
		default:
			t.Errorf("round %d: no pong for the relayed ping", round)
		}
	}
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "done"), time.Now().Add(relayIO)); err != nil {
		t.Fatal(err)
	}
	up.expectClose(t, 1000, "done")
	expectLog(t, gw, "reason", "normal", "closed_by", "client", "client_close_code", "1000", "upstream_close_code", "1000")
}

// Behind a load balancer that speaks the PROXY protocol, client legs park
// too, once the protocol reader has handed on what it buffered past the
// header: a small request arrives whole in that buffer, a large one is
// read past it. Messages either way resume the legs; the client address
// is the header's throughout.
func TestParkProxyProtocol(t *testing.T) {
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, "server.proxy_protocol", "true"))
	for i, c := range []struct {
		name, client string
		header       []byte
		extra        []string
	}{
		{"v1-request-in-header-buffer", "203.0.113.7", proxyV1("203.0.113.7"), nil},
		{"v2-request-past-header-buffer", "198.51.100.9", proxyV2(t, "198.51.100.9"),
			[]string{"X-Padding: " + strings.Repeat("p", 3000)}},
	} {
		a := wstest.MustHandshake(t, gw.Addr, "", c.header, c.extra...)
		wstest.ExpectStatus(t, a, 101, c.name)
		cl, u := a.Peer, recvPeer(t, ups)
		waitParked(t, gw.Gateway, 2, relay.ParkAfter+3*time.Second)
		for round := range 2 {
			msg := []byte(c.name + " " + itoa(round))
			cl.Send(true, frame.OpText, msg)
			if f := u.Next(); f.Opcode != frame.OpText || string(f.Payload) != string(msg) {
				t.Fatalf("%s: upstream got %v, want %q", c.name, f, msg)
			}
			u.Send(true, frame.OpBinary, msg)
			if f := cl.Next(); f.Opcode != frame.OpBinary || string(f.Payload) != string(msg) {
				t.Fatalf("%s: client got %v, want %q", c.name, f, msg)
			}
			waitParked(t, gw.Gateway, 2, relay.ParkAfter+3*time.Second)
		}
		cl.SendClose(1000, "bye")
		u.ExpectClose(1000, "bye")
		u.SendClose(1000, "bye")
		cl.ExpectClose(1000, "bye")
		waitFor(t, "the session to end", func() bool { return gw.Sessions() == 0 })
		if m := sessionLog(t, gw, i+1); m["client"] != c.client || m["reason"] != "normal" {
			t.Errorf("%s: access log client %v reason %v, want %s normal", c.name, m["client"], m["reason"], c.client)
		}
	}
}

// TLS legs park as well, on both sides (wss:// from a gorilla client,
// wss:// to a gorilla upstream), under TLS 1.3 and 1.2: crypto/tls reads
// the socket only when it holds no whole record, so a leg whose read timed
// out has nothing left above the descriptor. Messages of one byte to many
// records resume the legs intact, and they park again.
func TestParkTLS(t *testing.T) {
	ca := newTLSCA(t, "wsgate test CA")
	upCA := newTLSCA(t, "upstream CA")
	up := newTLSEchoUpstream(t, upCA.leaf(t, "127.0.0.1"))
	routes := tlsRoute("wss", "/ws", up.URL+"/ws", fmt.Sprintf("upstream_tls: {ca: %q}", upCA.file))
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{ca.leaf(t, "a.test")}, "", routes))
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		d := websocket.Dialer{
			TLSClientConfig:  &tls.Config{RootCAs: ca.pool, ServerName: "a.test", MaxVersion: version},
			HandshakeTimeout: tlsIO,
			NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, gw.TLSAddr)
			},
		}
		c, _, err := d.Dial("wss://a.test:"+gw.TLSPort+"/ws", nil)
		if err != nil {
			t.Fatalf("TLS %x: %v", version, err)
		}
		up.request(t)
		waitParked(t, gw.Gateway, 2, relay.ParkAfter+3*time.Second)
		for _, size := range []int{1, 125, 20_000, 70_000} {
			msg := bytes.Repeat([]byte{byte(size)}, size)
			_ = c.SetReadDeadline(time.Now().Add(tlsIO))
			_ = c.SetWriteDeadline(time.Now().Add(tlsIO))
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				t.Fatal(err)
			}
			typ, p, err := c.ReadMessage()
			if err != nil || typ != websocket.BinaryMessage || !bytes.Equal(p, msg) {
				t.Fatalf("TLS %x, %d bytes: echo type %d, %d bytes, %v", version, size, typ, len(p), err)
			}
			waitParked(t, gw.Gateway, 2, relay.ParkAfter+3*time.Second)
		}
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(tlsIO))
		if code := up.closeCode(t, tlsIO); code != 1000 {
			t.Errorf("TLS %x: the upstream got close %d, want 1000", version, code)
		}
		c.Close()
		waitFor(t, "the session to end", func() bool { return gw.Sessions() == 0 })
	}
}

// A sender that pauses inside a frame for longer than relay.ParkAfter does not
// make the pump spin: it cannot park mid-frame, and a read deadline left in
// the past would time every read out at once without reading. Checked by
// the process's CPU time while the sender pauses, with a small frame
// (payload read whole) and a large one (streamed). Not parallel: it reads
// the whole process's CPU time.
func TestParkNoSpinMidFrame(t *testing.T) {
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"))
	for _, size := range []int{1000, 100 << 10} {
		c := wstest.DialRaw(t, gw.Addr, "/")
		u := recvPeer(t, ups)
		payload := pattern(size, 3)
		b := frame.AppendFrame(nil, c.Header(true, frame.OpBinary), payload)
		cut := len(b) - 100
		c.Write(b[:cut])
		before := cpuTime(t)
		time.Sleep(relay.ParkAfter + 1500*time.Millisecond)
		used := cpuTime(t) - before
		c.Write(b[cut:])
		if f := u.Next(); f.Opcode != frame.OpBinary || !bytes.Equal(f.Payload, payload) {
			t.Fatalf("%d bytes: upstream got %v with %d bytes", size, f.Opcode, len(f.Payload))
		}
		if used > 500*time.Millisecond {
			t.Errorf("%d-byte frame: the process used %v of CPU while the sender paused %v mid-frame, want next to none",
				size, used, relay.ParkAfter+1500*time.Millisecond)
		}
		c.SendClose(1000, "")
		u.ExpectClose(1000, "")
		u.SendClose(1000, "")
		c.ExpectClose(1000, "")
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

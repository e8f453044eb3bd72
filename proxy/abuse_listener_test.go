package proxy

// End-to-end tests of the listener's defences (docs/handshake.md,
// first paragraph: handshake_timeout, max_pending_per_ip) and of the PROXY
// protocol (server.proxy_protocol; issue 7).

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"wsgate/internal/wstest"

	"github.com/pires/go-proxyproto"
)

// TestSlowlorisHandshakeTimeout: 500 connections from five addresses send
// their request one byte per second. Per address, max_pending_per_ip (40)
// are let in and closed when handshake_timeout (2s) runs out; the others
// are closed at once. Meanwhile a client from another address connects and
// echoes. Every attacker gives up after 10 bytes, so the test ends by itself.
func TestSlowlorisHandshakeTimeout(t *testing.T) {
	t.Parallel()
	const (
		perAddr    = 100
		maxPending = 40
		timeout    = 2 * time.Second
	)
	addrs := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}
	gw := startGateway(t, relayYAML("builtin:echo", "server.handshake_timeout", timeout.String(),
		"server.max_pending_per_ip", fmt.Sprint(maxPending)))

	type result struct {
		after time.Duration // when the gateway closed it
		sent  int           // bytes of the request sent by then
		open  bool          // still open after 10 bytes
		err   error         // dial error
	}
	results := make(chan result, perAddr*len(addrs))
	req := upgradeRequest(gw.Addr, "/")
	var wg sync.WaitGroup
	for _, a := range addrs {
		for range perAddr {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := wstest.DialFrom(a, gw.Addr)
				if err != nil {
					results <- result{err: err}
					return
				}
				defer conn.Close()
				t0 := time.Now()
				var buf [512]byte
				for i := range 10 {
					_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := conn.Write([]byte{req[i]}); err != nil {
						results <- result{after: time.Since(t0), sent: i}
						return
					}
					// The pause between bytes doubles as the check: the
					// gateway's closing shows as EOF or a reset.
					_ = conn.SetReadDeadline(time.Now().Add(time.Second))
					n, err := conn.Read(buf[:])
					if n > 0 {
						results <- result{err: fmt.Errorf("the gateway answered %q", buf[:n])}
						return
					}
					if err != nil && !isTimeout(err) {
						results <- result{after: time.Since(t0), sent: i + 1}
						return
					}
				}
				results <- result{open: true}
			}()
		}
	}

	// A normal client from another address during the attack.
	time.Sleep(300 * time.Millisecond)
	normal := wstest.DialRaw(t, gw.Addr, "/")
	for i := range 5 {
		normal.EchoCheck(fmt.Sprint("during the attack ", i))
		time.Sleep(200 * time.Millisecond)
	}
	normal.SendClose(1000, "")
	normal.ExpectClose(1000, "")

	wg.Wait()
	close(results)
	refused, timedOut := 0, 0
	var slowest time.Duration
	for r := range results {
		switch {
		case r.err != nil:
			t.Errorf("attacker: %v", r.err)
		case r.open:
			t.Error("an attacking connection was still open after 10 bytes (10s)")
		case r.after < timeout/2:
			refused++
		case r.after < timeout+time.Second+timeout/2:
			timedOut++
		default:
			t.Errorf("closed only after %v", r.after)
		}
		slowest = max(slowest, r.after)
	}
	t.Logf("%d connections: %d refused by max_pending_per_ip, %d closed by handshake_timeout (the last after %v)",
		perAddr*len(addrs), refused, timedOut, slowest.Round(time.Millisecond))
	if want := len(addrs) * maxPending; timedOut != want || refused != len(addrs)*perAddr-want {
		t.Errorf("%d timed out and %d refused, want %d and %d", timedOut, refused, want, len(addrs)*perAddr-want)
	}
	if n := len(gw.Logs.Lines(`"status":429`, "max_pending_per_ip")); n != refused {
		t.Errorf("%d max_pending_per_ip log lines, want %d", n, refused)
	}
	if n := rejections(gw.Gateway, "", "408"); n < float64(timedOut)*9/10 {
		t.Errorf("wsgate_handshake_rejected_total{route=\"\",status=\"408\"} = %v for %d timeouts", n, timedOut)
	}
	if n := gw.gate.Pending.Keys(); n != 0 {
		t.Errorf("%d addresses still hold pending slots", n)
	}
}

// TestSlowKeepAliveIsClosed: a connection that got its answer and then sits
// idle on keep-alive must send its next request within handshake_timeout
// too (net/http alone would keep it open for ever).
func TestSlowKeepAliveIsClosed(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, relayYAML("builtin:echo", "server.handshake_timeout", "500ms"))
	conn, err := net.Dial("tcp", gw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(relayIO))
	// Not an upgrade: 426, and the connection stays open for the next one.
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 426") {
		t.Fatalf("first answer %q, %v", buf[:n], err)
	}
	t0 := time.Now()
	for {
		_, err = conn.Read(buf)
		if err != nil {
			break
		}
	}
	if el := time.Since(t0); isTimeout(err) || el > 2*time.Second {
		t.Fatalf("idle keep-alive connection: %v after %v, want closed after about 500ms", err, el)
	}
}

// proxyV1 is a PROXY protocol v1 line for a TCP client at src.
func proxyV1(src string) []byte {
	fam := "TCP4"
	if strings.Contains(src, ":") {
		fam = "TCP6"
	}
	dst := "127.0.0.1"
	if fam == "TCP6" {
		dst = "::1"
	}
	return []byte(fmt.Sprintf("PROXY %s %s %s 40000 8080\r\n", fam, src, dst))
}

// proxyV2 is a PROXY protocol v2 header for a TCP client at src (command
// LOCAL if src is "").
func proxyV2(t testing.TB, src string) []byte {
	t.Helper()
	h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	if src != "" {
		ip := net.ParseIP(src)
		h.Command = proxyproto.PROXY
		h.TransportProtocol = proxyproto.TCPv4
		dst := net.ParseIP("127.0.0.1")
		if ip.To4() == nil {
			h.TransportProtocol = proxyproto.TCPv6
			dst = net.ParseIP("::1")
		}
		h.SourceAddr = &net.TCPAddr{IP: ip, Port: 40000}
		h.DestinationAddr = &net.TCPAddr{IP: dst, Port: 8080}
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProxyProtocolV1V2: the address in a PROXY v1 or v2 header is the
// client address for the limits (handshakes per address, IPv6 by /64), the
// logs and the X-Forwarded-For sent upstream.
func TestProxyProtocolV1V2(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t)
	gw := startGateway(t, limitYAML(up.URL, "{handshakes: {rate: 1/m, burst: 1}}", "server.proxy_protocol", "true"))
	for i, c := range []struct {
		name, client string
		header       []byte
		want         int
	}{
		{"v1", "203.0.113.7", proxyV1("203.0.113.7"), 101},
		{"v1-same-address", "203.0.113.7", proxyV1("203.0.113.7"), 429},
		{"v1-ipv6", "2001:db8:9::1", proxyV1("2001:db8:9::1"), 101},
		{"v2", "198.51.100.9", proxyV2(t, "198.51.100.9"), 101},
		{"v2-same-address-as-v1", "203.0.113.7", proxyV2(t, "203.0.113.7"), 429},
		{"v2-ipv6", "2001:db8:1:2::7", proxyV2(t, "2001:db8:1:2::7"), 101},
		{"v2-ipv6-same-64", "2001:db8:1:2::8", proxyV2(t, "2001:db8:1:2::8"), 429},
		{"v2-local", "127.0.0.1", proxyV2(t, ""), 101}, // a health check: the TCP peer
	} {
		before := up.Count()
		a := wstest.MustHandshake(t, gw.Addr, "", c.header)
		wstest.ExpectStatus(t, a, c.want, c.name)
		if c.want != 101 {
			if lines := gw.Logs.Lines(`"status":429`, `"client":"`+c.client+`"`); len(lines) == 0 {
				t.Errorf("%s: no rejection logged for client %s", c.name, c.client)
			}
			continue
		}
		if up.Count() != before+1 {
			t.Fatalf("%s: upstream saw %d handshakes", c.name, up.Count()-before)
		}
		r := up.Requests()[before]
		if got := r.Header.Get("X-Forwarded-For"); got != c.client {
			t.Errorf("%s: X-Forwarded-For %q, want %q", c.name, got, c.client)
		}
		if got := r.Header.Get("Forwarded"); !strings.Contains(got, c.client) {
			t.Errorf("%s: Forwarded %q, want for=%s", c.name, got, c.client)
		}
		a.Peer.EchoCheck("via " + c.name)
		a.Peer.SendClose(1000, "")
		a.Peer.ExpectClose(1000, "")
		a.Peer.Conn.Close()
		m := sessionLog(t, gw, 1+countOK(i))
		if m["client"] != c.client {
			t.Errorf("%s: access log client %v, want %s", c.name, m["client"], c.client)
		}
	}
}

// countOK is how many of the first i cases of TestProxyProtocolV1V2 made a
// session (the access log lines before case i).
func countOK(i int) int { return []int{0, 1, 1, 2, 3, 3, 4, 4}[i] }

// TestProxyProtocolMissingOrGarbled: with proxy_protocol on, a connection
// that does not open with a valid header is closed without an answer, and
// the gateway goes on serving.
func TestProxyProtocolMissingOrGarbled(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, relayYAML("builtin:echo", "server.proxy_protocol", "true"))
	v2 := proxyV2(t, "198.51.100.9")
	badVersion := append([]byte(nil), v2...)
	badVersion[12] = 0x31 // version 3
	badLength := append([]byte(nil), v2...)
	badLength[14], badLength[15] = 0xff, 0xff // longer than what follows
	for _, c := range []struct {
		name string
		pre  []byte
	}{
		{"missing", nil},
		{"garbage-v1", []byte("PROXY GARBAGE\r\n")},
		{"bad-address-v1", []byte("PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n")},
		{"unterminated-v1", []byte("PROXY TCP4 192.0.2.1 127.0.0.1 1 2" + strings.Repeat(" ", 200))},
		{"v2-bad-version", badVersion},
		{"v2-bad-length", badLength[:28]},
		// A v2 TCPv4 header whose address block is too short for two
		// addresses and ports.
		{"v2-short-addresses", append(append([]byte(nil), v2[:14]...), 0x00, 0x04, 1, 2, 3, 4)},
	} {
		conn, err := net.Dial("tcp", gw.Addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(relayIO))
		_, _ = conn.Write(append(c.pre, upgradeRequest(gw.Addr, "/")...))
		b, err := io.ReadAll(conn)
		conn.Close()
		var ne net.Error
		if len(b) > 0 || (err != nil && errors.As(err, &ne) && ne.Timeout()) {
			t.Errorf("%s: got %q, %v; want the connection closed without an answer", c.name, b, err)
		}
	}
	if n := len(gw.Logs.Lines(`"event":"proxy_protocol"`)); n != 7 {
		t.Errorf("%d proxy_protocol log lines, want 7:\n%s", n, gw.Logs.String())
	}
	a := wstest.MustHandshake(t, gw.Addr, "", proxyV1("192.0.2.44"))
	wstest.ExpectStatus(t, a, http.StatusSwitchingProtocols, "a valid header after the bad ones")
	a.Peer.EchoCheck("still serving")
}

// TestProxyProtocolPendingPerAddress: max_pending_per_ip counts the address
// from the PROXY header, not the load balancer's.
func TestProxyProtocolPendingPerAddress(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, relayYAML("builtin:echo", "server.proxy_protocol", "true", "server.max_pending_per_ip", "2"))
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	// Two unfinished handshakes from 203.0.113.1 (via the "load balancer"
	// 127.0.0.1): the third is closed; another address is not.
	for range 2 {
		c, err := net.Dial("tcp", gw.Addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		_, _ = c.Write(append(proxyV1("203.0.113.1"), "GET / HT"...))
	}
	eventually(t, "two pending handshakes", func() bool { return gw.gate.Pending.Count(netipMust("203.0.113.1")) == 2 })
	c, err := net.Dial("tcp", gw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(relayIO))
	_, _ = c.Write(append(proxyV1("203.0.113.1"), upgradeRequest(gw.Addr, "/")...))
	if b, _ := io.ReadAll(c); len(b) > 0 {
		t.Errorf("third pending handshake answered %q, want closed", b)
	}
	c.Close()
	a := wstest.MustHandshake(t, gw.Addr, "", proxyV1("203.0.113.2"))
	wstest.ExpectStatus(t, a, 101, "another client behind the same load balancer")
}

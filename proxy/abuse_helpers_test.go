package proxy

// Helpers of the abuse-protection tests (issue 7): clients that connect from
// a chosen 127.0.0.x address, optionally after a PROXY protocol header, and
// configs with rate limits.

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"wsgate/frame"
	"wsgate/handshake"
)

// limitYAML is relayYAML with a rate_limit block (a YAML flow mapping such
// as "{handshakes: {rate: 1/m, burst: 2}}") under defaults.
func limitYAML(upstream, rateLimit string, kv ...string) string {
	if rateLimit != "" {
		kv = append(kv, "rate_limit", rateLimit)
	}
	return relayYAML(upstream, kv...)
}

// dialFrom opens a TCP connection to addr from the local IP local ("" = any).
func dialFrom(local, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: relayIO}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	return d.Dial("tcp", addr)
}

// wsAttempt is the outcome of an opening handshake: a peer on 101, else the
// response and its body.
type wsAttempt struct {
	peer *rawPeer
	resp *http.Response
	body string
}

// wsHandshake opens a WebSocket to the gateway at addr from local, writing
// pre (e.g. a PROXY header) before the request; extra are header lines. A
// connection the gateway closes without answering is an error.
func wsHandshake(t testing.TB, addr, local string, pre []byte, extra ...string) (wsAttempt, error) {
	t.Helper()
	conn, err := dialFrom(local, addr)
	if err != nil {
		return wsAttempt{}, err
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	_ = conn.SetDeadline(time.Now().Add(relayIO))
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	req += "\r\n"
	if _, err := conn.Write(append(append([]byte(nil), pre...), req...)); err != nil {
		conn.Close()
		return wsAttempt{}, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return wsAttempt{}, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		return wsAttempt{resp: resp, body: string(b)}, nil
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != handshake.AcceptKey(key) {
		conn.Close()
		return wsAttempt{}, fmt.Errorf("bad accept %q", resp.Header.Get("Sec-WebSocket-Accept"))
	}
	_ = conn.SetDeadline(time.Time{})
	p := &rawPeer{t: t, conn: conn, br: br, client: true, key: frame.NewKey()}
	t.Cleanup(func() { conn.Close() })
	return wsAttempt{peer: p, resp: resp}, nil
}

// mustHandshake is wsHandshake that fails the test on a transport error.
func mustHandshake(t testing.TB, addr, local string, pre []byte, extra ...string) wsAttempt {
	t.Helper()
	a, err := wsHandshake(t, addr, local, pre, extra...)
	if err != nil {
		t.Fatalf("handshake from %q: %v", local, err)
	}
	return a
}

// status is the handshake's HTTP status.
func (a wsAttempt) status() int {
	if a.peer != nil {
		return http.StatusSwitchingProtocols
	}
	return a.resp.StatusCode
}

// expectStatus checks a handshake's status (and, for a rejection, that the
// body names a reason).
func expectStatus(t testing.TB, a wsAttempt, want int, what string) {
	t.Helper()
	if got := a.status(); got != want {
		t.Fatalf("%s: status %d (%q), want %d", what, got, a.body, want)
	}
	if want != http.StatusSwitchingProtocols && strings.TrimSpace(a.body) == "" {
		t.Errorf("%s: %d without a reason in the body", what, want)
	}
}

// echoOnce sends a text message and expects it back.
func (p *rawPeer) echoOnce(msg string) {
	p.t.Helper()
	p.send(true, frame.OpText, []byte(msg))
	for {
		f := p.next()
		if f.Opcode == frame.OpPing || f.Opcode == frame.OpPong {
			continue
		}
		if f.Opcode != frame.OpText || string(f.Payload) != msg {
			p.t.Fatalf("echo: got %v, want %q", f, msg)
		}
		return
	}
}

// rateHits is the value of wsgate_rate_limited_total{route,kind}.
func rateHits(g *Gateway, route, kind string) float64 {
	return counterValue(g.metrics.RateLimited.WithLabelValues(route, kind))
}

// rejections is the value of wsgate_handshake_rejected_total{route,status}.
func rejections(g *Gateway, route, status string) float64 {
	return counterValue(g.metrics.Rejected.WithLabelValues(route, status))
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// echoUpstream is an upstream that answers every handshake and echoes
// data, answers pings, records the requests (headers included).
func echoUpstream(t testing.TB) *testUpstream {
	return newUpstream(t, "echo", nil)
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }

// eventually waits up to relayIO for cond.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(relayIO)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

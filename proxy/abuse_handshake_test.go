package proxy

// End-to-end tests of the handshake-time limits (docs/handshake.md
// "Limits at the handshake": 403, 429, 503, 431; issue 7), through a running gateway.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"wsgate/internal/config"
	"wsgate/internal/wstest"

	dto "github.com/prometheus/client_model/go"
)

func TestLimitHandshakesRetryAfter(t *testing.T) {
	up := echoUpstream(t)
	gw := startGateway(t, limitYAML(up.URL, "{handshakes: {rate: 1/m, burst: 2}}"))
	for i := 0; i < 2; i++ {
		a := wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil)
		wstest.ExpectStatus(t, a, 101, fmt.Sprintf("handshake %d", i+1))
		a.Peer.EchoOnce("hi")
	}
	dials := up.Count()
	a := wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil)
	wstest.ExpectStatus(t, a, http.StatusTooManyRequests, "third handshake")
	// One token per minute, none left: the next is 60s away (less the
	// milliseconds since the last one), rounded up to whole seconds.
	// On a loaded machine a second may pass between the handshakes: 59 is
	// then the truthful answer.
	if got := a.Resp.Header.Get("Retry-After"); got != "60" && got != "59" {
		t.Errorf("Retry-After %q, want 60 (or 59)", got)
	}
	if !strings.Contains(a.Body, "too many handshakes") {
		t.Errorf("body %q", a.Body)
	}
	if up.Count() != dials {
		t.Error("a rate-limited handshake reached the upstream")
	}
	// Per client address: another address has its own bucket.
	wstest.ExpectStatus(t, wstest.MustHandshake(t, gw.Addr, "127.0.0.3", nil), 101, "other address")
	if n := rateHits(gw.Gateway, "relay", "handshakes"); n != 1 {
		t.Errorf("wsgate_rate_limited_total{kind=handshakes} = %v, want 1", n)
	}
	if lines := gw.Logs.Lines(`"event":"rejected"`, `"status":429`, `"client":"127.0.0.2"`); len(lines) != 1 {
		t.Errorf("rejection log lines: %q", lines)
	}
}

func TestLimitHandshakesRetryAfterFractional(t *testing.T) {
	up := echoUpstream(t)
	// 2 tokens per second, burst 1: the next token is 500ms away -> "1".
	// 1 token per 90s: 90s -> "90". Both rounded up, never 0.
	// The lower bound allows for a second passing between the handshakes on
	// a loaded machine.
	for _, c := range []struct{ rate, want, orLess string }{{"2/s", "1", "1"}, {"40/h", "90", "89"}} {
		gw := startGateway(t, limitYAML(up.URL, "{handshakes: {rate: "+c.rate+", burst: 1}}"))
		wstest.ExpectStatus(t, wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil), 101, c.rate+" first")
		a := wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil)
		wstest.ExpectStatus(t, a, 429, c.rate+" second")
		if got := a.Resp.Header.Get("Retry-After"); got != c.want && got != c.orLess {
			t.Errorf("rate %s: Retry-After %q, want %s", c.rate, got, c.want)
		}
		gw.stop()
	}
}

func TestLimitConnectionsPerIP(t *testing.T) {
	up := echoUpstream(t)
	gw := startGateway(t, limitYAML(up.URL, "{connections_per_ip: 2}"))
	a1 := wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil)
	a2 := wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil)
	wstest.ExpectStatus(t, a1, 101, "first")
	wstest.ExpectStatus(t, a2, 101, "second")
	a3 := wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil)
	wstest.ExpectStatus(t, a3, http.StatusTooManyRequests, "third session from one address")
	if !strings.Contains(a3.Body, "too many connections") {
		t.Errorf("body %q", a3.Body)
	}
	wstest.ExpectStatus(t, wstest.MustHandshake(t, gw.Addr, "127.0.0.3", nil), 101, "other address")
	// A session that ends frees its slot.
	a1.Peer.SendClose(1000, "")
	a1.Peer.ExpectClose(1000, "")
	deadline := time.Now().Add(relayIO)
	for {
		a := wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil)
		if a.Status() == 101 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed: %d", a.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := rateHits(gw.Gateway, "relay", "connections_per_ip"); n < 1 {
		t.Errorf("wsgate_rate_limited_total{kind=connections_per_ip} = %v", n)
	}
}

// TestLimitMaxConnectionsExact: the cap is reserved before the upstream
// dial, so a burst of concurrent handshakes cannot overshoot it.
func TestLimitMaxConnectionsExact(t *testing.T) {
	slow := newUpstream(t, "slow", func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
		time.Sleep(300 * time.Millisecond) // every handshake is in flight at once
		accept101(nil)(u, req, conn, br)
	})
	gw := startGateway(t, relayYAML(slow.URL, "server.max_connections", "3"))
	const n = 12
	var wg sync.WaitGroup
	res := make([]wstest.Attempt, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = wstest.MustHandshake(t, gw.Addr, fmt.Sprintf("127.0.0.%d", 2+i%4), nil)
		}()
	}
	wg.Wait()
	ok, busy := 0, 0
	for _, a := range res {
		switch a.Status() {
		case 101:
			ok++
		case 503:
			busy++
			if a.Resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		default:
			t.Errorf("status %d %q", a.Status(), a.Body)
		}
	}
	if ok != 3 || busy != n-3 {
		t.Fatalf("%d sessions and %d 503s, want 3 and %d", ok, busy, n-3)
	}
	if slow.Count() != 3 {
		t.Errorf("upstream saw %d handshakes, want 3: refused ones must not dial", slow.Count())
	}
}

func TestLimitOriginsExactAndWildcard(t *testing.T) {
	up := echoUpstream(t)
	gw := startGateway(t, relayYAML(up.URL, "origins", `["https://app.example.org", "https://*.example.com"]`))
	for _, c := range []struct {
		origin string
		want   int
	}{
		{"", 101}, // non-browser clients send none
		{"https://app.example.org", 101},
		{"https://a.example.com", 101},
		{"https://a.b.example.com", 101},
		{"https://example.com", 403}, // the wildcard needs a label
		{"http://a.example.com", 403},
		{"https://evil.example.org", 403},
		{"https://a.example.com.evil.test", 403},
		{"null", 403},
	} {
		var extra []string
		if c.origin != "" {
			extra = []string{"Origin: " + c.origin}
		}
		wstest.ExpectStatus(t, wstest.MustHandshake(t, gw.Addr, "", nil, extra...), c.want, "Origin "+c.origin)
	}
}

// TestLimitMaxHeaderBytes: 431 at the configured size, both above net/http's
// 4 KiB floor (net/http's own check, shifted by its slop) and below it (the
// gateway's check).
func TestLimitMaxHeaderBytes(t *testing.T) {
	up := echoUpstream(t)
	for _, max := range []int{8192, 1024} {
		gw := startGateway(t, relayYAML(up.URL, "server.max_header_bytes", fmt.Sprint(max)))
		base := len(upgradeHead(gw.Addr, ""))
		for _, size := range []int{max, max + 1} {
			head := upgradeHead(gw.Addr, "X-Pad: "+strings.Repeat("p", size-base-len("X-Pad: \r\n")))
			if len(head) != size {
				t.Fatalf("built a %d-byte head, want %d", len(head), size)
			}
			rc := exchange(t, gw.Addr, head)
			want := 101
			if size > max {
				want = http.StatusRequestHeaderFieldsTooLarge
			}
			if rc.resp.StatusCode != want {
				t.Errorf("max_header_bytes %d, head of %d bytes: %d, want %d", max, size, rc.resp.StatusCode, want)
			}
		}
		// Logged and counted once, whichever of net/http (above its
		// floor) and the gateway answered.
		waitFor(t, "the 431 to be logged", func() bool { return len(gw.Logs.Lines(`"status":431`)) > 0 })
		if lines := gw.Logs.Lines(`"event":"rejected"`, `"status":431`, `"route":""`, "max_header_bytes"); len(lines) != 1 {
			t.Errorf("max_header_bytes %d: %d rejection lines for the 431, want 1:\n%s", max, len(lines), gw.Logs.String())
		}
		if n := rejectedCount(t, gw.Gateway, "431"); n != 1 {
			t.Errorf("max_header_bytes %d: rejected{route=\"\",status=\"431\"} = %v, want 1", max, n)
		}
		gw.stop()
	}
}

// upgradeHead is an upgrade request head with one extra header line.
func upgradeHead(host, extra string) string {
	h := "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + clientKey + "\r\nSec-WebSocket-Version: 13\r\n"
	if extra != "" {
		h += extra + "\r\n"
	}
	return h + "\r\n"
}

// TestLimitStateSurvivesReload: a reload that keeps the route's limits keeps
// its buckets (an address over its limit stays over it); a changed rate
// starts afresh.
func TestLimitStateSurvivesReload(t *testing.T) {
	up := echoUpstream(t)
	yaml := limitYAML(up.URL, "{handshakes: {rate: 1/m, burst: 1}}")
	gw := startGateway(t, yaml)
	wstest.ExpectStatus(t, wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil), 101, "first")
	wstest.ExpectStatus(t, wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil), 429, "second")
	reload := func(text string) {
		t.Helper()
		cfg, err := config.Parse("test.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if err := gw.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	reload(yaml + "  - name: other\n    path: /other\n    upstreams: [\"builtin:echo\"]\n")
	wstest.ExpectStatus(t, wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil), 429, "after a reload with the same limits")
	reload(limitYAML(up.URL, "{handshakes: {rate: 2/m, burst: 1}}"))
	wstest.ExpectStatus(t, wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil), 101, "after a reload that changed the rate")
}

// TestLimitTrustedProxyClientAddress: behind a trusted proxy, the client
// address from X-Forwarded-For (or, without it, Forwarded's for=) is what
// the limits key on and what the logs and X-Forwarded-For carry; from a
// peer that is not trusted, those headers are ignored.
func TestLimitTrustedProxyClientAddress(t *testing.T) {
	up := echoUpstream(t)
	gw := startGateway(t, limitYAML(up.URL, "{handshakes: {rate: 1/m, burst: 1}}",
		"server.trusted_proxies", "[127.0.0.1/32]"))
	for _, c := range []struct {
		name, local, header string
		want                int
		client, xff         string
	}{
		{"xff", "127.0.0.1", "X-Forwarded-For: 198.51.100.1", 101, "198.51.100.1", "198.51.100.1, 127.0.0.1"},
		{"xff-again", "127.0.0.1", "X-Forwarded-For: 198.51.100.1", 429, "198.51.100.1", ""},
		{"xff-other", "127.0.0.1", "X-Forwarded-For: 198.51.100.2", 101, "198.51.100.2", "198.51.100.2, 127.0.0.1"},
		{"forwarded", "127.0.0.1", `Forwarded: for="[2001:db8::5]:443";proto=https`, 101, "2001:db8::5", "2001:db8::5, 127.0.0.1"},
		{"forwarded-same-64", "127.0.0.1", `Forwarded: for="[2001:db8::6]"`, 429, "2001:db8::6", ""},
		// Not a trusted peer: its header is dropped, it is limited as itself.
		{"untrusted", "127.0.0.2", "X-Forwarded-For: 198.51.100.3", 101, "127.0.0.2", "127.0.0.2"},
		{"untrusted-again", "127.0.0.2", "X-Forwarded-For: 198.51.100.4", 429, "127.0.0.2", ""},
	} {
		before := up.Count()
		a := wstest.MustHandshake(t, gw.Addr, c.local, nil, c.header)
		wstest.ExpectStatus(t, a, c.want, c.name)
		if c.want != 101 {
			if len(gw.Logs.Lines(`"status":429`, `"client":"`+c.client+`"`)) == 0 {
				t.Errorf("%s: no rejection logged for %s", c.name, c.client)
			}
			continue
		}
		if got := up.Requests()[before].Header.Get("X-Forwarded-For"); got != c.xff {
			t.Errorf("%s: X-Forwarded-For %q, want %q", c.name, got, c.xff)
		}
		a.Peer.Conn.Close()
	}
}

// TestNetHTTPRefusalsLogged: requests net/http refuses by itself, before
// the gateway's handler runs (RFC 9112 §3.2: no Host; §6.1: a transfer
// coding it does not know; a malformed header line), get net/http's status,
// and are logged and counted as rejected handshakes like the gateway's own
// refusals; the gateway's own 404 is logged once, not twice.
func TestNetHTTPRefusalsLogged(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, relayYAML("builtin:echo"))
	defer func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", gw.Logs.String())
		}
	}()
	for _, c := range []struct {
		name, req string
		status    int
		reason    string
	}{
		// Before any route is matched: route="".
		{"no Host", "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 400, "missing required Host header"},
		{"unknown transfer coding", "GET /ws HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: bogus\r\n\r\n", 501, "Unsupported transfer encoding"},
		{"malformed header", "GET /ws HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", 400, "malformed request (400 Bad Request)"},
		// The gateway's own, on a route.
		{"no upgrade", "GET /ws HTTP/1.1\r\nHost: a\r\n\r\n", 426, "upgrade to websocket required"},
	} {
		rc := exchange(t, gw.Addr, c.req)
		if rc.resp.StatusCode != c.status {
			t.Fatalf("%s: status %d, want %d", c.name, rc.resp.StatusCode, c.status)
		}
		st := `"status":` + strconv.Itoa(c.status)
		waitFor(t, c.name+" to be logged", func() bool { return len(gw.Logs.Lines(`"event":"rejected"`, st, c.reason)) > 0 })
		if lines := gw.Logs.Lines(`"event":"rejected"`, st, c.reason); len(lines) != 1 {
			t.Errorf("%s: %d rejection lines, want 1", c.name, len(lines))
		}
	}
	for status, want := range map[string]float64{"400": 2, "501": 1} {
		if n := rejectedCount(t, gw.Gateway, status); n != want {
			t.Errorf(`rejected{route="",status=%q} = %v, want %v`, status, n, want)
		}
	}
}

// rejectedCount is wsgate_handshake_rejected_total{route="",status}.
func rejectedCount(t testing.TB, g *Gateway, status string) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.metrics.Rejected.WithLabelValues("", status).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

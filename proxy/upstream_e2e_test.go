package proxy

// End-to-end tests of the upstream side of the opening handshake (docs/handshake.md
// "Upstream outcomes"): what the
// upstream receives, and what the client is told about each way the upstream
// can answer.

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wsgate/handshake"
	"wsgate/internal/balance"
	"wsgate/internal/config"
)

// routeYAML is a one-route config for path /ws over upstreams, with extra
// route lines (indented by four spaces).
func routeYAML(upstreams []string, extra ...string) string {
	var b strings.Builder
	b.WriteString(e2eHead + "routes:\n  - name: r\n    path: /ws\n    upstreams:\n")
	for _, u := range upstreams {
		if strings.HasPrefix(u, "{") {
			fmt.Fprintf(&b, "      - %s\n", u)
		} else {
			fmt.Fprintf(&b, "      - %q\n", u)
		}
	}
	for _, l := range extra {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

func requestsOf(ups ...*testUpstream) int {
	n := 0
	for _, u := range ups {
		n += u.Count()
	}
	return n
}

// TestUpstreamStatusPassedThrough: a non-101 answer reaches the client with
// its status, its body (at most 1 KiB) and its WWW-Authenticate,
// Retry-After, Location and Set-Cookie, and is never retried on another
// upstream.
func TestUpstreamStatusPassedThrough(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("0123456789abcdef", 300) // 4800 bytes
	tests := []struct {
		name     string
		resp     string
		closeAft bool // the upstream closes after writing (body until EOF)
		status   int
		body     string
		header   map[string][]string
	}{
		{"401", "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"chat\", error=\"invalid_token\"\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nneed auth",
			false, 401, "need auth", map[string][]string{"Www-Authenticate": {`Bearer realm="chat", error="invalid_token"`}}},
		{"403 with cookies", "HTTP/1.1 403 Forbidden\r\nSet-Cookie: a=1; Path=/; HttpOnly\r\nSet-Cookie: b=2\r\nContent-Length: 14\r\n\r\nyou are banned",
			false, 403, "you are banned", map[string][]string{"Set-Cookie": {"a=1; Path=/; HttpOnly", "b=2"}}},
		{"404", "HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\nno such room", false, 404, "no such room", nil},
		{"500", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!", false, 500, "oops!", nil},
		{"302", "HTTP/1.1 302 Found\r\nLocation: https://login.example.com/?next=%2Fws\r\nContent-Length: 0\r\n\r\n",
			false, 302, "", map[string][]string{"Location": {"https://login.example.com/?next=%2Fws"}}},
		{"503", "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy",
			false, 503, "busy", map[string][]string{"Retry-After": {"7"}}},
		{"body cut at 1 KiB", "HTTP/1.1 403 Forbidden\r\nContent-Length: 4800\r\n\r\n" + long, false, 403, long[:1024], nil},
		{"chunked body", "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
			false, 401, "hello world", map[string][]string{"Www-Authenticate": {`Basic realm="x"`}}},
		{"body until close", "HTTP/1.0 429 Too Many Requests\r\nRetry-After: 30\r\n\r\nslow down", true, 429, "slow down",
			map[string][]string{"Retry-After": {"30"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := answerRaw(tt.resp)
			if tt.closeAft {
				h = answerRawClose(tt.resp)
			}
			a, b := newUpstream(t, "a", h), newUpstream(t, "b", h)
			gw := startGateway(t, routeYAML([]string{a.URL, b.URL}))
			rc := exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
			if rc.resp.StatusCode != tt.status || string(rc.body) != tt.body {
				t.Fatalf("got %d %q, want %d %q", rc.resp.StatusCode, rc.body, tt.status, tt.body)
			}
			for k, want := range tt.header {
				if got := rc.resp.Header.Values(k); strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("%s: got %q, want %q", k, got, want)
				}
			}
			if rc.resp.ContentLength != int64(len(tt.body)) {
				t.Errorf("Content-Length %d, want %d", rc.resp.ContentLength, len(tt.body))
			}
			if n := requestsOf(a, b); n != 1 {
				t.Fatalf("the upstreams saw %d requests, want 1 (a non-101 is never retried)", n)
			}
		})
	}
}

// TestUpstreamBadHandshake: a 101 that fails the client-side checks of
// RFC 6455 §4.1 (wrong accept, a subprotocol or an extension we did not
// offer), or an answer that is not HTTP, is a 502; it is the upstream's
// answer, so no other upstream is tried.
func TestUpstreamBadHandshake(t *testing.T) {
	t.Parallel()
	const ok101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	tests := []struct {
		name   string
		resp   string
		offer  string // the client's Sec-WebSocket-Protocol, "" for none
		reason string
	}{
		{"wrong accept", ok101 + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", "", "wrong Sec-WebSocket-Accept"},
		{"no accept", ok101 + "\r\n", "", "wrong Sec-WebSocket-Accept"},
		{"two accepts", ok101 + "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Accept: %s\r\n\r\n", "", "wrong Sec-WebSocket-Accept"},
		{"no Upgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", "",
			"101 without Upgrade: websocket and Connection: Upgrade"},
		{"subprotocol not offered", ok101 + "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: chat.v3\r\n\r\n", "chat.v1, chat.v2",
			"upstream chose a subprotocol that was not offered"},
		{"subprotocol when none offered", ok101 + "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: chat.v1\r\n\r\n", "",
			"upstream chose a subprotocol that was not offered"},
		{"extension", ok101 + "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", "",
			"upstream chose an extension that was not offered"},
		{"extension the client offered", ok101 + "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", "",
			"upstream chose an extension that was not offered"},
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n\r\n", "", "malformed HTTP response"},
		{"header injection", ok101 + "Sec-WebSocket-Accept: %s\r\nSet-Cookie: a=1\rX-Evil: 1\r\n\r\n", "", "malformed HTTP response"},
		{"head over 16 KiB", ok101 + "Sec-WebSocket-Accept: %s\r\nX-Big: " + strings.Repeat("b", 17<<10) + "\r\n\r\n", "",
			"response head too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := newUpstream(t, "a", answerRaw(tt.resp)), newUpstream(t, "b", answerRaw(tt.resp))
			gw := startGateway(t, routeYAML([]string{a.URL, b.URL}))
			var extra []string
			if tt.offer != "" {
				extra = append(extra, "Sec-WebSocket-Protocol: "+tt.offer)
			}
			if strings.Contains(tt.name, "client offered") {
				extra = append(extra, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
			}
			rc := exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/ws", extra...))
			want := "bad upstream handshake: " + tt.reason + "\n"
			if rc.resp.StatusCode != 502 || string(rc.body) != want {
				t.Fatalf("got %d %q, want 502 %q", rc.resp.StatusCode, rc.body, want)
			}
			if n := requestsOf(a, b); n != 1 {
				t.Fatalf("the upstreams saw %d requests, want 1", n)
			}
		})
	}
}

// TestUpstreamUnreachable: refused everywhere is a 502 after trying the
// next upstream, at most 3 attempts however many upstreams there are.
func TestUpstreamUnreachable(t *testing.T) {
	t.Parallel()
	const unavailable = "upstream unavailable\n"
	t.Run("two refused", func(t *testing.T) {
		t.Parallel()
		dead := []string{deadURL(t), deadURL(t)}
		gw := startGateway(t, routeYAML(dead))
		rc := exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		if rc.resp.StatusCode != 502 || string(rc.body) != unavailable {
			t.Fatalf("got %d %q, want 502 %q", rc.resp.StatusCode, rc.body, unavailable)
		}
		for _, u := range dead {
			if n := len(gw.Logs.Lines(`"upstream dial failed"`, `"upstream":"`+u+`"`)); n != 1 {
				t.Errorf("%s tried %d times, want 1", u, n)
			}
		}
	})
	t.Run("five refused", func(t *testing.T) {
		t.Parallel()
		var dead []string
		for range 5 {
			dead = append(dead, deadURL(t))
		}
		gw := startGateway(t, routeYAML(dead))
		rc := exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		if rc.resp.StatusCode != 502 || string(rc.body) != unavailable {
			t.Fatalf("got %d %q, want 502 %q", rc.resp.StatusCode, rc.body, unavailable)
		}
		if n := len(gw.Logs.Lines(`"upstream dial failed"`)); n != 3 {
			t.Errorf("%d attempts, want 3", n)
		}
		// Round robin from the start of the list: the first three.
		for i, u := range dead {
			want := 0
			if i < 3 {
				want = 1
			}
			if n := len(gw.Logs.Lines(`"upstream dial failed"`, `"upstream":"`+u+`"`)); n != want {
				t.Errorf("upstream %d tried %d times, want %d", i, n, want)
			}
		}
	})
	t.Run("five hang up", func(t *testing.T) {
		// Upstreams that accept and close at once: countable attempts.
		t.Parallel()
		var ups []*testUpstream
		var urls []string
		for i := range 5 {
			u := newUpstream(t, fmt.Sprint(i), answerRawClose(""))
			ups = append(ups, u)
			urls = append(urls, u.URL)
		}
		gw := startGateway(t, routeYAML(urls))
		rc := exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		if rc.resp.StatusCode != 502 || string(rc.body) != unavailable {
			t.Fatalf("got %d %q, want 502 %q", rc.resp.StatusCode, rc.body, unavailable)
		}
		var total int64
		for _, u := range ups {
			if n := u.accepts.Load(); n > 1 {
				t.Errorf("upstream %s dialled %d times", u.Name, n)
			}
			total += u.accepts.Load()
		}
		if total != 3 {
			t.Errorf("%d attempts, want 3", total)
		}
	})
}

// TestUpstreamTimeout: the answer is 504 when the last attempt exceeded
// upstream_dial_timeout, and 502 when the last attempt was refused.
func TestUpstreamTimeout(t *testing.T) {
	t.Parallel()
	const timeout = "upstream_dial_timeout: 300ms"
	t.Run("hang", func(t *testing.T) {
		t.Parallel()
		h := newUpstream(t, "hang", hang)
		gw := startGateway(t, routeYAML([]string{h.URL}, timeout))
		start := time.Now()
		rc := exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		if rc.resp.StatusCode != 504 || string(rc.body) != "upstream timed out\n" {
			t.Fatalf("got %d %q, want 504 upstream timed out", rc.resp.StatusCode, rc.body)
		}
		if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
			t.Errorf("answered after %v, want about 300ms", d)
		}
		if h.Count() != 1 {
			t.Errorf("the upstream saw %d requests, want 1", h.Count())
		}
	})
	t.Run("refused then hang", func(t *testing.T) {
		t.Parallel()
		h := newUpstream(t, "hang", hang)
		gw := startGateway(t, routeYAML([]string{deadURL(t), h.URL}, timeout))
		rc := exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		if rc.resp.StatusCode != 504 || string(rc.body) != "upstream timed out\n" {
			t.Fatalf("got %d %q, want 504 upstream timed out", rc.resp.StatusCode, rc.body)
		}
		if h.Count() != 1 {
			t.Errorf("the hanging upstream saw %d requests, want 1", h.Count())
		}
	})
	t.Run("hang then refused", func(t *testing.T) {
		t.Parallel()
		h := newUpstream(t, "hang", hang)
		gw := startGateway(t, routeYAML([]string{h.URL, deadURL(t)}, timeout))
		rc := exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		if rc.resp.StatusCode != 502 || string(rc.body) != "upstream unavailable\n" {
			t.Fatalf("got %d %q, want 502 upstream unavailable", rc.resp.StatusCode, rc.body)
		}
	})
	t.Run("accepts, never answers, then a good one", func(t *testing.T) {
		t.Parallel()
		h, good := newUpstream(t, "hang", hang), newUpstream(t, "good", nil)
		gw := startGateway(t, routeYAML([]string{h.URL, good.URL}, timeout))
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		rc.echoes(t, "after a timeout")
	})
}

// TestUpstreamRequest: what the upstream receives for a valid handshake:
// end-to-end headers forwarded, hop-by-hop and the client's handshake
// headers not, a fresh key, our forwarding headers, the upstream's Host.
func TestUpstreamRequest(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	gw := startGateway(t, routeYAML([]string{up.URL + "/base"},
		"set_headers: {X-Gateway: wsgate, X-Override: from-config}"))
	req := "GET /ws/room/1?user=ann&x=%20y HTTP/1.1\r\n" +
		"Host: chat.example.com\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: keep-alive, Upgrade, X-Hop, x-other-hop\r\n" +
		"Sec-WebSocket-Key: " + clientKey + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" +
		"Sec-WebSocket-Accept: forged\r\n" +
		"Cookie: session=abc\r\n" +
		"Cookie: theme=dark\r\n" +
		"Authorization: Bearer t0ken\r\n" +
		"X-Custom: one\r\n" +
		"X-Custom: two\r\n" +
		"X-Override: from-client\r\n" +
		"X-Hop: must not pass\r\n" +
		"X-Other-Hop: must not pass\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"TE: trailers\r\n" +
		"Trailer: X-T\r\n" +
		"Proxy-Authorization: Basic c2VjcmV0\r\n" +
		"Proxy-Connection: keep-alive\r\n" +
		"User-Agent: e2e-test\r\n" +
		"Origin: https://app.example.com\r\n" +
		"\r\n"
	rc := dialWS(t, gw.Addr, req)
	rc.echoes(t, "hello")
	got := up.only(t)
	h := got.Header

	if got.Method != "GET" || got.RequestURI != "/base/ws/room/1?user=ann&x=%20y" {
		t.Errorf("request line: %s %s, want GET /base/ws/room/1?user=ann&x=%%20y", got.Method, got.RequestURI)
	}
	if got.Host != up.Addr {
		t.Errorf("Host %q, want the upstream's %q", got.Host, up.Addr)
	}
	want := map[string][]string{
		"Cookie":                {"session=abc", "theme=dark"},
		"Authorization":         {"Bearer t0ken"},
		"X-Custom":              {"one", "two"},
		"X-Gateway":             {"wsgate"},
		"X-Override":            {"from-config"},
		"User-Agent":            {"e2e-test"},
		"Origin":                {"https://app.example.com"},
		"Upgrade":               {"websocket"},
		"Connection":            {"Upgrade"},
		"Sec-Websocket-Version": {"13"},
		"X-Forwarded-For":       {"127.0.0.1"},
		"X-Forwarded-Proto":     {"http"},
		"X-Forwarded-Host":      {"chat.example.com"},
		"Forwarded":             {"for=127.0.0.1;host=chat.example.com;proto=http"},
		// The client's offer, rebuilt (README "Compression").
		"Sec-Websocket-Extensions": {"permessage-deflate; server_no_context_takeover; client_max_window_bits"},
	}
	for k, v := range want {
		if g := h.Values(k); strings.Join(g, "|") != strings.Join(v, "|") {
			t.Errorf("%s: upstream got %q, want %q", k, g, v)
		}
	}
	for _, k := range []string{"X-Hop", "X-Other-Hop", "Keep-Alive", "Te", "Trailer", "Proxy-Authorization",
		"Proxy-Connection", "Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Content-Length", "Transfer-Encoding"} {
		if g := h.Values(k); len(g) > 0 {
			t.Errorf("%s reached the upstream: %q", k, g)
		}
	}
	// The upstream gets a key of our own (RFC 6455 §4.1: a fresh nonce per
	// connection), never the client's.
	keys := h.Values("Sec-Websocket-Key")
	if len(keys) != 1 || keys[0] == clientKey {
		t.Fatalf("upstream Sec-WebSocket-Key %q: want one fresh key", keys)
	}
	if raw, err := base64.StdEncoding.DecodeString(keys[0]); err != nil || len(raw) != 16 {
		t.Errorf("upstream key %q is not base64 of 16 bytes", keys[0])
	}
	// And a different one for every session.
	seen := map[string]bool{keys[0]: true}
	for i := range 4 {
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		rc.echoes(t, fmt.Sprint(i))
		rc.Close()
	}
	reqs := up.Requests()
	for _, r := range reqs[1:] {
		k := r.Header.Get("Sec-Websocket-Key")
		if k == clientKey || seen[k] {
			t.Errorf("key %q reused", k)
		}
		seen[k] = true
	}
}

// TestUpstreamForwardingHeaders: forwarding headers from an untrusted peer
// are dropped; from a trusted proxy they are kept and appended to, and the
// client address is the rightmost untrusted X-Forwarded-For entry.
func TestUpstreamForwardingHeaders(t *testing.T) {
	t.Parallel()
	forged := []string{
		"X-Forwarded-For: 203.0.113.9, 10.0.0.5",
		"X-Forwarded-Proto: https",
		"X-Forwarded-Host: public.example.com",
		`Forwarded: for=203.0.113.9;proto=https, for="10.0.0.5"`,
		"X-Real-IP: 203.0.113.9",
	}
	t.Run("untrusted", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, "up", nil)
		gw := startGateway(t, routeYAML([]string{up.URL}))
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com:8080", "/ws", forged...))
		rc.echoes(t, "x")
		h := up.only(t).Header
		want := map[string][]string{
			"X-Forwarded-For":   {"127.0.0.1"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"chat.example.com:8080"},
			// RFC 7239 §4: a value that is not a token (the colon) is quoted.
			"Forwarded": {`for=127.0.0.1;host="chat.example.com:8080";proto=http`},
			"X-Real-Ip": nil,
		}
		for k, v := range want {
			if g := h.Values(k); strings.Join(g, "|") != strings.Join(v, "|") {
				t.Errorf("%s: upstream got %q, want %q", k, g, v)
			}
		}
		rc.Close()
		waitFor(t, "access log", func() bool { return len(gw.Logs.Lines(`"event":"session"`)) == 1 })
		if len(gw.Logs.Lines(`"event":"session"`, `"client":"127.0.0.1"`)) != 1 {
			t.Errorf("access log client is not the TCP peer: %s", gw.Logs.Lines(`"event":"session"`))
		}
	})
	t.Run("trusted", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, "up", nil)
		gw := startGateway(t, strings.Replace(routeYAML([]string{up.URL}),
			"server:\n", "server:\n  trusted_proxies: [127.0.0.0/8]\n", 1))
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws", forged...))
		rc.echoes(t, "x")
		h := up.only(t).Header
		want := map[string][]string{
			"X-Forwarded-For":   {"203.0.113.9, 10.0.0.5, 127.0.0.1"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"public.example.com"},
			"Forwarded":         {`for=203.0.113.9;proto=https, for="10.0.0.5", for=127.0.0.1;host=chat.example.com;proto=http`},
			"X-Real-Ip":         {"203.0.113.9"},
		}
		for k, v := range want {
			if g := h.Values(k); strings.Join(g, "|") != strings.Join(v, "|") {
				t.Errorf("%s: upstream got %q, want %q", k, g, v)
			}
		}
		rc.Close()
		waitFor(t, "access log", func() bool { return len(gw.Logs.Lines(`"event":"session"`)) == 1 })
		if len(gw.Logs.Lines(`"event":"session"`, `"client":"10.0.0.5"`)) != 1 {
			t.Errorf("access log client is not the rightmost untrusted address 10.0.0.5: %s", gw.Logs.Lines(`"event":"session"`))
		}
		// A rejection is logged with the same client address.
		exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/nowhere", forged...))
		if len(gw.Logs.Lines(`"event":"rejected"`, `"client":"10.0.0.5"`, `"status":404`)) != 1 {
			t.Errorf("rejection not logged with client 10.0.0.5: %s", gw.Logs.Lines(`"event":"rejected"`))
		}
	})
	t.Run("trusted chain", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, "up", nil)
		gw := startGateway(t, strings.Replace(routeYAML([]string{up.URL}),
			"server:\n", "server:\n  trusted_proxies: [127.0.0.0/8, 10.0.0.0/8]\n", 1))
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws", "X-Forwarded-For: 198.51.100.1, 203.0.113.9, 10.0.0.5"))
		rc.echoes(t, "x")
		rc.Close()
		waitFor(t, "access log", func() bool { return len(gw.Logs.Lines(`"event":"session"`)) == 1 })
		if len(gw.Logs.Lines(`"event":"session"`, `"client":"203.0.113.9"`)) != 1 {
			t.Errorf("access log client is not 203.0.113.9: %s", gw.Logs.Lines(`"event":"session"`))
		}
		if g := up.only(t).Header.Values("X-Forwarded-For"); len(g) != 1 || g[0] != "198.51.100.1, 203.0.113.9, 10.0.0.5, 127.0.0.1" {
			t.Errorf("X-Forwarded-For %q", g)
		}
	})
}

// waitFor polls cond for up to ioTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUpstreamPath: the upstream path is the upstream URL's path joined with
// the request path (the route prefix removed with strip_prefix); the query
// is kept as sent.
func TestUpstreamPath(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	u := up.URL
	gw := startGateway(t, e2eHead+fmt.Sprintf(`routes:
  - {name: plain, path: /plain, upstreams: [%[1]s]}
  - {name: based, path: /based, upstreams: [%[1]s/base]}
  - {name: slashed, path: /slashed, upstreams: [%[1]s/base/]}
  - {name: strip, path: /strip, strip_prefix: true, upstreams: [%[1]s]}
  - {name: stripbased, path: /stripbased, strip_prefix: true, upstreams: [%[1]s/base]}
  - {name: stripdir, path: /dir/, strip_prefix: true, upstreams: [%[1]s/base]}
`, u))
	tests := []struct{ target, want string }{
		{"/plain", "/plain"},
		{"/plain/a/b?x=1&y=2", "/plain/a/b?x=1&y=2"},
		{"/plain/?q", "/plain/?q"},
		{"/based", "/base/based"},
		{"/based/room?id=7", "/base/based/room?id=7"},
		{"/slashed/x", "/base/slashed/x"},
		{"/strip", "/"},
		{"/strip/", "/"},
		{"/strip/a/b?x=%2F", "/a/b?x=%2F"},
		{"/stripbased", "/base"},
		{"/stripbased?v=1", "/base?v=1"},
		{"/stripbased/", "/base"},
		{"/stripbased/room/1", "/base/room/1"},
		{"/stripbased/a%20b", "/base/a%20b"},
		{"/dir/x", "/base/x"},
		{"/plain/a/../b", "/plain/b"},
		{"/plain//a", "/plain/a"},
		{"/plain?name=%C3%A9&q=a+b", "/plain?name=%C3%A9&q=a+b"},
		{"/plain/\xc3\xa9", "/plain/%C3%A9"}, // raw UTF-8 in the path is sent escaped
	}
	for i, tt := range tests {
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", tt.target))
		rc.Close()
		reqs := up.Requests()
		if len(reqs) != i+1 {
			t.Fatalf("%s: upstream saw %d requests, want %d", tt.target, len(reqs), i+1)
		}
		if got := reqs[i].RequestURI; got != tt.want {
			t.Errorf("%s reached the upstream as %s, want %s", tt.target, got, tt.want)
		}
		if reqs[i].Host != up.Addr {
			t.Errorf("%s: Host %q, want %q", tt.target, reqs[i].Host, up.Addr)
		}
	}
}

// TestUpstreamSubprotocols: offers are passed on (filtered by the route's
// subprotocols), the upstream's choice reaches the client, and Set-Cookie on
// the upstream's 101 is copied to the client's 101.
func TestUpstreamSubprotocols(t *testing.T) {
	t.Parallel()
	// The upstream picks its favourite among what it was offered.
	pick := func(offers []string) string {
		for _, want := range []string{"chat.v2", "chat.v1", "x-other"} {
			for _, o := range offers {
				if o == want {
					return o
				}
			}
		}
		return ""
	}
	up := newUpstream(t, "up", accept101(&opts101{protocol: pick,
		extra: http.Header{"Set-Cookie": {"sid=42; Path=/; Secure", "seen=1"}, "X-Not-Copied": {"1"}}}))
	gw := startGateway(t, e2eHead+fmt.Sprintf(`routes:
  - {name: open, path: /open, upstreams: [%[1]s]}
  - {name: filtered, path: /filtered, subprotocols: [chat.v1, chat.v2], upstreams: [%[1]s]}
`, up.URL))
	tests := []struct {
		target, offer string
		upstreamGot   string // the Sec-WebSocket-Protocol the upstream saw
		chosen        string
	}{
		{"/open", "", "", ""},
		{"/open", "x-other, chat.v1", "x-other, chat.v1", "chat.v1"},
		{"/open", "x-unknown", "x-unknown", ""},
		{"/filtered", "x-other, chat.v1, chat.v2", "chat.v1, chat.v2", "chat.v2"},
		{"/filtered", "x-other, chat.v1", "chat.v1", "chat.v1"},
		{"/filtered", "x-other", "", ""},
	}
	for i, tt := range tests {
		var extra []string
		if tt.offer != "" {
			extra = append(extra, "Sec-WebSocket-Protocol: "+tt.offer)
		}
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", tt.target, extra...))
		if got := rc.resp.Header.Values("Sec-WebSocket-Protocol"); strings.Join(got, ",") != tt.chosen {
			t.Errorf("%s offering %q: client got protocol %q, want %q", tt.target, tt.offer, got, tt.chosen)
		}
		if got := rc.resp.Header.Values("Set-Cookie"); strings.Join(got, "|") != "sid=42; Path=/; Secure|seen=1" {
			t.Errorf("client's 101 Set-Cookie %q", got)
		}
		if got := rc.resp.Header.Values("Sec-WebSocket-Extensions"); len(got) > 0 {
			t.Errorf("client's 101 has Sec-WebSocket-Extensions %q", got)
		}
		if got := rc.resp.Header.Values("X-Not-Copied"); len(got) > 0 {
			t.Errorf("client's 101 has the upstream's X-Not-Copied %q", got)
		}
		rc.echoes(t, "hi")
		rc.Close()
		r := up.Requests()[i]
		if got := strings.Join(r.Header.Values("Sec-Websocket-Protocol"), ", "); got != tt.upstreamGot {
			t.Errorf("%s offering %q: upstream was offered %q, want %q", tt.target, tt.offer, got, tt.upstreamGot)
		}
	}
}

// TestUpstreamDeadFirstSkipped: within one handshake a refused upstream is
// skipped and the client still gets its 101; the dead one then backs off.
func TestUpstreamDeadFirstSkipped(t *testing.T) {
	t.Parallel()
	live := newUpstream(t, "live", nil)
	dead := deadURL(t)
	gw := startGateway(t, routeYAML([]string{dead, live.URL}))
	for i := range 4 {
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		rc.echoes(t, fmt.Sprint("session ", i))
		rc.Close()
	}
	if n := live.Count(); n != 4 {
		t.Errorf("live upstream saw %d requests, want 4", n)
	}
	// Passive health: one failed dial, then the dead one is out of the
	// rotation for its back-off (1s) and is not tried again.
	if n := len(gw.Logs.Lines(`"upstream dial failed"`, dead)); n != 1 {
		t.Errorf("dead upstream tried %d times, want 1", n)
	}
}

// activeOn waits until the backends of route 0 have the given numbers of
// active sessions.
func activeOn(t testing.TB, gw *testGateway, want map[string]int64) {
	t.Helper()
	waitFor(t, fmt.Sprint("active sessions ", want), func() bool {
		for _, b := range gw.snap.Load().routes[0].pool.Backends() {
			if b.Active() != want[b.Key] {
				return false
			}
		}
		return true
	})
}

// TestBalanceLeastConn: with sessions held open, a new session goes to the
// upstream with the fewest.
func TestBalanceLeastConn(t *testing.T) {
	t.Parallel()
	greet := &opts101{greet: true}
	a, b, c := newUpstream(t, "a", accept101(greet)), newUpstream(t, "b", accept101(greet)), newUpstream(t, "c", accept101(greet))
	gw := startGateway(t, routeYAML([]string{a.URL, b.URL, c.URL}, "balance: least_conn"))
	open := map[string][]*rawConn{}
	dial := func() string {
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		name := rc.greeting(t)
		open[name] = append(open[name], rc)
		return name
	}
	// Six sessions, one after the other: two on each.
	for range 6 {
		dial()
	}
	for _, n := range []string{"a", "b", "c"} {
		if len(open[n]) != 2 {
			t.Fatalf("after 6 sessions: %s has %d, want 2 each", n, len(open[n]))
		}
	}
	activeOn(t, gw, map[string]int64{a.URL: 2, b.URL: 2, c.URL: 2})
	// End both sessions on b: the next two go to b.
	for _, rc := range open["b"] {
		rc.Close()
	}
	open["b"] = nil
	activeOn(t, gw, map[string]int64{a.URL: 2, b.URL: 0, c.URL: 2})
	for i := range 2 {
		if got := dial(); got != "b" {
			t.Fatalf("session %d after freeing b went to %s", i, got)
		}
	}
	// End one on c: the next goes to c.
	open["c"][0].Close()
	open["c"] = open["c"][1:]
	activeOn(t, gw, map[string]int64{a.URL: 2, b.URL: 2, c.URL: 1})
	if got := dial(); got != "c" {
		t.Fatalf("session after freeing one on c went to %s", got)
	}
	for _, l := range open {
		for _, rc := range l {
			rc.Close()
		}
	}
}

// TestBalanceIPHash: the same client address always reaches the same
// upstream, the one Pool's rendezvous hashing picks for that address, and
// many addresses spread over all upstreams. Client addresses come from a
// trusted proxy's X-Forwarded-For.
func TestBalanceIPHash(t *testing.T) {
	t.Parallel()
	greet := &opts101{greet: true}
	ups := []*testUpstream{newUpstream(t, "a", accept101(greet)), newUpstream(t, "b", accept101(greet)), newUpstream(t, "c", accept101(greet))}
	byURL := map[string]string{}
	var urls []string
	var backends []*balance.Backend
	for _, u := range ups {
		urls = append(urls, u.URL)
		byURL[u.URL] = u.Name
		backends = append(backends, balance.NewBackend(u.URL, 1))
	}
	gw := startGateway(t, strings.Replace(routeYAML(urls, "balance: ip_hash"), "server:\n", "server:\n  trusted_proxies: [127.0.0.1]\n", 1))
	ref := balance.NewPool(balance.IPHash, backends)
	perUpstream := map[string]int{}
	for i := range 24 {
		ip := fmt.Sprintf("198.51.100.%d", 10+i)
		want := byURL[ref.Candidates(nil, ip, time.Now(), 1)[0].Key]
		for round := range 2 {
			rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws", "X-Forwarded-For: "+ip))
			got := rc.greeting(t)
			rc.Close()
			if got != want {
				t.Fatalf("client %s (round %d) went to %s, want %s", ip, round, got, want)
			}
		}
		perUpstream[want]++
	}
	for _, u := range ups {
		if perUpstream[u.Name] == 0 {
			t.Errorf("no client hashed to %s: %v", u.Name, perUpstream)
		}
	}
	// Without a trusted proxy every request comes from 127.0.0.1: one
	// upstream only, whatever X-Forwarded-For says.
	gw2 := startGateway(t, routeYAML(urls, "balance: ip_hash"))
	want := byURL[ref.Candidates(nil, "127.0.0.1", time.Now(), 1)[0].Key]
	for i := range 6 {
		rc := dialWS(t, gw2.Addr, upgradeRequest("chat.example.com", "/ws", fmt.Sprintf("X-Forwarded-For: 198.51.100.%d", i)))
		if got := rc.greeting(t); got != want {
			t.Fatalf("untrusted X-Forwarded-For moved the client to %s, want %s", got, want)
		}
		rc.Close()
	}
}

// TestBalanceWeightedRoundRobin: weights 1 and 3 give exactly 1:3 over
// whole cycles, interleaved (smooth weighted round robin).
func TestBalanceWeightedRoundRobin(t *testing.T) {
	t.Parallel()
	greet := &opts101{greet: true}
	a, b, c := newUpstream(t, "a", accept101(greet)), newUpstream(t, "b", accept101(greet)), newUpstream(t, "c", accept101(greet))
	gw := startGateway(t, routeYAML([]string{a.URL, fmt.Sprintf("{url: %q, weight: 3}", b.URL), fmt.Sprintf("{url: %q, weight: 2}", c.URL)}))
	count := map[string]int{}
	var seq strings.Builder
	run := 0
	maxRun := 0
	prev := ""
	for range 18 { // three cycles of 1+3+2
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		name := rc.greeting(t)
		rc.Close()
		count[name]++
		seq.WriteString(name)
		if name == prev {
			run++
		} else {
			run = 1
		}
		maxRun = max(maxRun, run)
		prev = name
	}
	if count["a"] != 3 || count["b"] != 9 || count["c"] != 6 {
		t.Fatalf("distribution %v (sequence %s), want a:3 b:9 c:6", count, seq.String())
	}
	if maxRun > 2 {
		t.Errorf("sequence %s has a run of %d: not interleaved", seq.String(), maxRun)
	}
}

// TestBalanceLeastConnBurst: concurrent handshakes under least_conn count
// against their upstream while they are dialling (pool.go: Backend.Acquire),
// so a burst does not all land on the upstream that was least loaded when it
// began.
func TestBalanceLeastConnBurst(t *testing.T) {
	t.Parallel()
	var slow atomic.Bool
	greetSlowly := func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
		if slow.Load() {
			time.Sleep(300 * time.Millisecond)
		}
		accept101(&opts101{greet: true})(u, req, conn, br)
	}
	a, b, c := newUpstream(t, "a", greetSlowly), newUpstream(t, "b", greetSlowly), newUpstream(t, "c", greetSlowly)
	gw := startGateway(t, routeYAML([]string{a.URL, b.URL, c.URL}, "balance: least_conn"))
	open := map[string][]*rawConn{}
	for range 6 {
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		name := rc.greeting(t)
		open[name] = append(open[name], rc)
	}
	for _, rc := range open["a"] {
		rc.Close()
	}
	activeOn(t, gw, map[string]int64{a.URL: 0, b.URL: 2, c.URL: 2})
	// a: 0, b: 2, c: 2. Four handshakes at once, each upstream taking
	// 300ms to answer: least_conn must end at 3/3/2, not a: 4.
	slow.Store(true)
	var mu sync.Mutex
	got := map[string]int{"b": 2, "c": 2}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
			if rc.resp.StatusCode != 101 {
				t.Errorf("got %d", rc.resp.StatusCode)
				return
			}
			f, err := rc.peer(t).Read() // not Next: this goroutine must not FailNow
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[string(f.Payload)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	lo, hi := 100, 0
	for _, n := range []string{"a", "b", "c"} {
		lo, hi = min(lo, got[n]), max(hi, got[n])
	}
	if hi-lo > 1 {
		t.Errorf("after a burst of 4: %v, want 3/3/2 in some order", got)
	}
}

// TestUpstreamFailedCanceledBadAnswer: a malformed upstream answer read just
// as the client went away carries two wrapped causes (context.Canceled and
// handshake.ErrBadResponse); answering it must not panic.
func TestUpstreamFailedCanceledBadAnswer(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(routeYAML([]string{"builtin:echo"})))
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		fmt.Errorf("handshake: read response: %w: %w", context.Canceled, handshake.ErrBadResponse),
		handshake.ErrBadAccept,
	} {
		rec := httptest.NewRecorder()
		g.upstreamFailed(rec, httptest.NewRequest("GET", "/ws", nil), "r", err)
		if rec.Code != 502 || !strings.HasPrefix(rec.Body.String(), "bad upstream handshake: ") {
			t.Errorf("%v: got %d %q, want 502 bad upstream handshake", err, rec.Code, rec.Body.String())
		}
	}
}

// TestPipelinedFrames: a client may send its first frame right behind its
// request, and an upstream its first frame right behind its 101; neither is
// lost (handshake.Upgrade and Dial hand over their buffered readers).
func TestPipelinedFrames(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "greeter", accept101(&opts101{greet: true}))
	gw := startGateway(t, routeYAML([]string{up.URL}))
	key := [4]byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | 5, key[0], key[1], key[2], key[3]}
	for i, c := range []byte("early") {
		frame = append(frame, c^key[i%4])
	}
	rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws")+string(frame))
	if got := rc.greeting(t); got != "greeter" {
		t.Fatalf("first frame %q, want the upstream's greeting", got)
	}
	if op, p := rc.recv(t); op != 0x1 || string(p) != "early" {
		t.Fatalf("pipelined frame echoed as opcode %d %q", op, p)
	}
	rc.echoes(t, "later")
}

// TestUpstreamValid101Variants: 101s that RFC 6455 §4.1 accepts: token
// lists in any case, an interim 100 before the 101, an empty extensions
// field.
func TestUpstreamValid101Variants(t *testing.T) {
	t.Parallel()
	for _, resp := range []string{
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		"HTTP/1.1 101 \r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Extensions: \r\n\r\n",
	} {
		up := newUpstream(t, "up", answerRaw(resp))
		gw := startGateway(t, routeYAML([]string{up.URL}))
		rc := exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		if rc.resp.StatusCode != 101 {
			t.Errorf("upstream answer %q: client got %d %q, want 101", resp, rc.resp.StatusCode, rc.body)
		}
		rc.Close()
	}
}

// TestUpstreamClientGaveUp: a client that hangs up while the gateway is
// still dialling cancels the dial (the upstream connection is closed at
// once), and the upstream is not blamed for it: it stays in the rotation.
func TestUpstreamClientGaveUp(t *testing.T) {
	t.Parallel()
	var first atomic.Bool
	released := make(chan time.Time, 1)
	slowOnce := func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
		if first.CompareAndSwap(false, true) {
			_, _ = br.ReadByte() // until the gateway hangs up
			released <- time.Now()
			return
		}
		accept101(&opts101{greet: true})(u, req, conn, br)
	}
	a := newUpstream(t, "a", slowOnce)
	b := newUpstream(t, "b", accept101(&opts101{greet: true}))
	gw := startGateway(t, routeYAML([]string{a.URL, b.URL}, "upstream_dial_timeout: 3s"))

	c, err := net.Dial("tcp", gw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(upgradeRequest("chat.example.com", "/ws"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dial to a", func() bool { return a.Count() == 1 })
	gaveUp := time.Now()
	c.Close()
	select {
	case at := <-released:
		if d := at.Sub(gaveUp); d > time.Second {
			t.Errorf("the upstream connection lived %v after the client left", d)
		}
	case <-time.After(ioTimeout):
		t.Fatal("the dial to a was not cancelled")
	}
	// Round robin: b, then a again — not skipped as if it had failed.
	for _, want := range []string{"b", "a"} {
		rc := dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
		if got := rc.greeting(t); got != want {
			t.Errorf("went to %s, want %s", got, want)
		}
		rc.Close()
	}
	if l := gw.Logs.Lines(`"upstream dial failed"`); len(l) != 0 {
		t.Errorf("a client giving up was logged as an upstream failure: %s", l)
	}
}

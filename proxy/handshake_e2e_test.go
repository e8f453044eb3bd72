package proxy

// End-to-end tests of the client side of the opening handshake (docs/handshake.md
// "Order of checks"): raw requests over real sockets, so every
// byte is ours, answered by a gateway on 127.0.0.1; upstreams count what
// reaches them, so a rejection that leaks a dial is caught.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/handshake"
	"wsgate/internal/echo"
	"wsgate/internal/wstest"
)

// ioTimeout bounds every read and write of these tests.
const ioTimeout = 5 * time.Second

// e2eHead starts every e2e config: a quick shutdown, so that a session a
// test leaves open cannot hold the gateway for the default 30s grace.
const e2eHead = "server:\n  shutdown_grace: 3s\n  close_spread: 0s\ndefaults:\n  close_timeout: 500ms\n"

// clientKey is the example key of RFC 6455 §1.3.
const clientKey = "dGhlIHNhbXBsZSBub25jZQ=="

// upReq is one request as an upstream received it.
type upReq struct {
	Method, RequestURI, Path, RawQuery, Host string
	Header                                   http.Header
}

// testUpstream is an upstream on 127.0.0.1 that records every request
// (method, target, all headers) and answers with its handler.
type testUpstream struct {
	Name    string
	Addr    string
	URL     string // ws://Addr
	ln      net.Listener
	accepts atomic.Int64 // TCP connections accepted
	handle  func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader)

	mu    sync.Mutex
	reqs  []upReq
	conns []net.Conn
	wg    sync.WaitGroup
}

// newUpstream starts an upstream; handle answers each request (nil: a valid
// 101 and an echo server). Everything is closed when the test ends.
func newUpstream(t testing.TB, name string, handle func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader)) *testUpstream {
	t.Helper()
	if handle == nil {
		handle = accept101(nil)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &testUpstream{Name: name, Addr: ln.Addr().String(), URL: "ws://" + ln.Addr().String(), ln: ln, handle: handle}
	u.wg.Add(1)
	go u.serve()
	t.Cleanup(u.close)
	return u
}

func (u *testUpstream) serve() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.accepts.Add(1)
		u.mu.Lock()
		u.conns = append(u.conns, c)
		u.mu.Unlock()
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(ioTimeout))
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			u.mu.Lock()
			u.reqs = append(u.reqs, upReq{Method: req.Method, RequestURI: req.RequestURI, Path: req.URL.Path,
				RawQuery: req.URL.RawQuery, Host: req.Host, Header: req.Header.Clone()})
			u.mu.Unlock()
			u.handle(u, req, c, br)
		}()
	}
}

func (u *testUpstream) close() {
	u.ln.Close()
	u.mu.Lock()
	for _, c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// Requests returns a copy of the requests received so far.
func (u *testUpstream) Requests() []upReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.reqs)
}

// Count is the number of requests received.
func (u *testUpstream) Count() int { return len(u.Requests()) }

// only returns the only request the upstream received, failing otherwise.
func (u *testUpstream) only(t testing.TB) upReq {
	t.Helper()
	r := u.Requests()
	if len(r) != 1 {
		t.Fatalf("upstream %s received %d requests, want 1", u.Name, len(r))
	}
	return r[0]
}

// opts101 shapes a valid 101.
type opts101 struct {
	protocol func(offers []string) string // nil: no subprotocol
	extra    http.Header                  // e.g. Set-Cookie
	greet    bool                         // send a text frame with the upstream's name first
}

// accept101 answers a correct 101 (the accept of the request's key) and
// then echoes like builtin:echo.
func accept101(o *opts101) func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
	if o == nil {
		o = &opts101{}
	}
	return func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
		hs, rej := handshake.Check(req)
		if rej != nil {
			_, _ = conn.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			return
		}
		proto := ""
		if o.protocol != nil {
			proto = o.protocol(hs.Protocols)
		}
		resp := handshake.AppendResponse101(nil, hs.Key, proto, o.extra)
		if o.greet {
			resp = appendServerFrame(resp, 0x1, []byte(u.Name))
		}
		if _, err := conn.Write(resp); err != nil {
			return
		}
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		echo.Loop(conn, br)
	}
}

// answerRaw answers every request with text, "%s" in it replaced by the
// accept key of the request, then waits for the gateway to hang up.
func answerRaw(text string) func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
	return func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
		resp := strings.ReplaceAll(text, "%s", handshake.AcceptKey(req.Header.Get("Sec-WebSocket-Key")))
		if _, err := conn.Write([]byte(resp)); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, br)
	}
}

// answerRawClose writes text and closes: a body delimited by the close.
func answerRawClose(text string) func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
	return func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
		_, _ = conn.Write([]byte(text))
	}
}

// hang reads the request and never answers.
func hang(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
	_, _ = io.Copy(io.Discard, br)
}

// deadURL returns a ws:// URL on which nothing listens (connection refused).
func deadURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "ws://" + addr
}

// upgradeRequest is a valid upgrade request for host and target, with extra
// header lines ("Name: value") appended.
func upgradeRequest(host, target string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", target, host, clientKey)
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// rawConn is a client connection that sent raw bytes and read the response.
type rawConn struct {
	net.Conn
	br   *bufio.Reader
	resp *http.Response
	body []byte // of a non-101 response
}

// exchange dials addr, sends req verbatim and reads the response (and its
// body, unless it is a 101). The connection is closed when the test ends.
func exchange(t testing.TB, addr, req string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", firstLine(req), err)
	}
	rc := &rawConn{Conn: c, br: br, resp: resp}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		rc.body, err = io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading the body of %d: %v", resp.StatusCode, err)
		}
	}
	return rc
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// dialWS is a successful raw handshake; it fails the test unless the answer
// is a 101 with our accept key.
func dialWS(t testing.TB, addr, req string) *rawConn {
	t.Helper()
	rc := exchange(t, addr, req)
	if rc.resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("%q: got %s %q, want 101", firstLine(req), rc.resp.Status, rc.body)
	}
	h := rc.resp.Header
	if got := h.Values("Sec-WebSocket-Accept"); len(got) != 1 || got[0] != handshake.AcceptKey(clientKey) {
		t.Fatalf("client got Sec-WebSocket-Accept %q, want %q", got, handshake.AcceptKey(clientKey))
	}
	if !strings.EqualFold(h.Get("Upgrade"), "websocket") || !strings.EqualFold(h.Get("Connection"), "upgrade") {
		t.Fatalf("client's 101 has Upgrade %q, Connection %q", h.Values("Upgrade"), h.Values("Connection"))
	}
	return rc
}

// appendServerFrame appends an unmasked final frame (server → client).
func appendServerFrame(dst []byte, op byte, p []byte) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case len(p) < 126:
		dst = append(dst, byte(len(p)))
	case len(p) <= 0xffff:
		dst = append(dst, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(p)))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(len(p)))
	}
	return append(dst, p...)
}

// peer is the shared test client on c's connection, for frames after the
// 101.
func (c *rawConn) peer(t testing.TB) *wstest.Peer {
	return &wstest.Peer{T: t, Conn: c.Conn, BR: c.br, Client: true, Key: frame.NewKey()}
}

// send writes a masked final frame (client → gateway).
func (c *rawConn) send(t testing.TB, op byte, p []byte) {
	t.Helper()
	c.peer(t).Send(true, frame.Opcode(op), p)
}

// recv reads one frame from the gateway, which must be final and unmasked.
func (c *rawConn) recv(t testing.TB) (op byte, p []byte) {
	t.Helper()
	f := c.peer(t).Next()
	if !f.Fin || f.Rsv != 0 || f.Masked {
		t.Fatalf("unexpected frame %v (want FIN, no RSV, unmasked)", f)
	}
	return byte(f.Opcode), f.Payload
}

// echoes checks that a message goes through the session and comes back.
func (c *rawConn) echoes(t testing.TB, msg string) {
	t.Helper()
	c.send(t, 0x1, []byte(msg))
	op, p := c.recv(t)
	if op != 0x1 || string(p) != msg {
		t.Fatalf("echo: got opcode %d %q, want text %q", op, p, msg)
	}
}

// greeting reads the text frame a greeting upstream sends first: its name.
func (c *rawConn) greeting(t testing.TB) string {
	t.Helper()
	op, p := c.recv(t)
	if op != 0x1 {
		t.Fatalf("greeting: opcode %d", op)
	}
	return string(p)
}

// TestHandshakeRejections walks the client-side handshake table row by row:
// the exact status, reason body and headers the client receives, in the
// the order of checks of docs/handshake.md, and that no rejected handshake reaches an upstream.
func TestHandshakeRejections(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	gw := startGateway(t, e2eHead+fmt.Sprintf(`routes:
  - name: ws
    path: /ws
    upstreams: [%[1]s]
  - name: strict
    path: /strict
    origins: ["https://app.example.com", "https://*.example.org"]
    upstreams: [%[1]s]
  - name: hosted
    host: chat.example.com
    path: /only
    upstreams: [%[1]s]
`, up.URL))
	host := gw.Addr
	key15 := base64.StdEncoding.EncodeToString(make([]byte, 15))
	key17 := base64.StdEncoding.EncodeToString(make([]byte, 17))
	const (
		noRoute    = "no route for this host and path\n"
		notGET     = "websocket handshake must use GET\n"
		http10     = "websocket handshake requires HTTP/1.1 or later\n"
		noUpgrade  = "this endpoint speaks WebSocket only: upgrade to websocket required\n"
		badUpgrade = "Upgrade header does not contain the websocket token\n"
		badConn    = "Connection header does not contain the upgrade token\n"
		badVersion = "unsupported Sec-WebSocket-Version: only 13 is supported\n"
		noKey      = "missing Sec-WebSocket-Key\n"
		badKey     = "Sec-WebSocket-Key is not base64 of 16 bytes\n"
		badOrigin  = "origin not allowed\n"
		badProto   = "invalid Sec-WebSocket-Protocol: offers must be unique tokens\n"
		badQuery   = "query string must be ASCII: percent-encode other bytes\n"
	)
	// req builds a request line by line; "" lines are dropped, so a row can
	// leave a header out.
	req := func(lines ...string) string {
		var b strings.Builder
		for _, l := range lines {
			if l != "" {
				b.WriteString(l + "\r\n")
			}
		}
		return b.String() + "\r\n"
	}
	hostLine := "Host: " + host
	upg, conn, ver, key := "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: "+clientKey
	tests := []struct {
		name   string
		req    string
		status int
		body   string
		header map[string]string
	}{
		{"no route", req("GET /nothing HTTP/1.1", hostLine, upg, conn, ver, key), 404, noRoute, nil},
		{"prefix is not a segment", req("GET /wsx HTTP/1.1", hostLine, upg, conn, ver, key), 404, noRoute, nil},
		{"prefix is not a segment, deeper", req("GET /wsx/ws HTTP/1.1", hostLine, upg, conn, ver, key), 404, noRoute, nil},
		{"host route, other host", req("GET /only HTTP/1.1", "Host: other.example.com", upg, conn, ver, key), 404, noRoute, nil},
		{"host route, parent domain", req("GET /only HTTP/1.1", "Host: example.com", upg, conn, ver, key), 404, noRoute, nil},
		{"route checked before method", req("POST /nothing HTTP/1.1", hostLine, "Content-Length: 0", upg, conn, ver, key), 404, noRoute, nil},
		{"POST", req("POST /ws HTTP/1.1", hostLine, "Content-Length: 0", upg, conn, ver, key), 405, notGET, map[string]string{"Allow": "GET"}},
		{"PUT", req("PUT /ws HTTP/1.1", hostLine, "Content-Length: 0", upg, conn, ver, key), 405, notGET, map[string]string{"Allow": "GET"}},
		{"HTTP/1.0", req("GET /ws HTTP/1.0", hostLine, upg, conn, ver, key), 400, http10, nil},
		{"HTTP/1.0 without Host", req("GET /ws HTTP/1.0", upg, conn, ver, key), 400, http10, nil},
		{"no Upgrade", req("GET /ws HTTP/1.1", hostLine, conn, ver, key), 426, noUpgrade, map[string]string{"Upgrade": "websocket"}},
		{"plain GET", req("GET /ws HTTP/1.1", hostLine), 426, noUpgrade, map[string]string{"Upgrade": "websocket"}},
		{"Upgrade h2c", req("GET /ws HTTP/1.1", hostLine, "Upgrade: h2c", conn, ver, key), 400, badUpgrade, nil},
		{"Upgrade websockets", req("GET /ws HTTP/1.1", hostLine, "Upgrade: websockets", conn, ver, key), 400, badUpgrade, nil},
		{"no Connection", req("GET /ws HTTP/1.1", hostLine, upg, ver, key), 400, badConn, nil},
		{"Connection keep-alive", req("GET /ws HTTP/1.1", hostLine, upg, "Connection: keep-alive", ver, key), 400, badConn, nil},
		{"Connection upgraded", req("GET /ws HTTP/1.1", hostLine, upg, "Connection: upgraded", ver, key), 400, badConn, nil},
		{"version 8", req("GET /ws HTTP/1.1", hostLine, upg, conn, "Sec-WebSocket-Version: 8", key), 426, badVersion, map[string]string{"Sec-WebSocket-Version": "13"}},
		{"version absent", req("GET /ws HTTP/1.1", hostLine, upg, conn, key), 426, badVersion, map[string]string{"Sec-WebSocket-Version": "13"}},
		{"version 13 twice", req("GET /ws HTTP/1.1", hostLine, upg, conn, ver, ver, key), 426, badVersion, map[string]string{"Sec-WebSocket-Version": "13"}},
		{"version checked before key", req("GET /ws HTTP/1.1", hostLine, upg, conn, "Sec-WebSocket-Version: 7"), 426, badVersion, map[string]string{"Sec-WebSocket-Version": "13"}},
		{"key absent", req("GET /ws HTTP/1.1", hostLine, upg, conn, ver), 400, noKey, nil},
		{"key not base64", req("GET /ws HTTP/1.1", hostLine, upg, conn, ver, "Sec-WebSocket-Key: abc"), 400, badKey, nil},
		{"key 24 chars not base64", req("GET /ws HTTP/1.1", hostLine, upg, conn, ver, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q=="), 400, badKey, nil},
		{"key of 15 bytes", req("GET /ws HTTP/1.1", hostLine, upg, conn, ver, "Sec-WebSocket-Key: "+key15), 400, badKey, nil},
		{"key of 17 bytes", req("GET /ws HTTP/1.1", hostLine, upg, conn, ver, "Sec-WebSocket-Key: "+key17), 400, badKey, nil},
		{"key twice", req("GET /ws HTTP/1.1", hostLine, upg, conn, ver, key, key), 400, "repeated Sec-WebSocket-Key\n", nil},
		{"subprotocol not a token", req("GET /ws HTTP/1.1", hostLine, upg, conn, ver, key, "Sec-WebSocket-Protocol: chat v1"), 400, badProto, nil},
		{"subprotocol offered twice", req("GET /ws HTTP/1.1", hostLine, upg, conn, ver, key, "Sec-WebSocket-Protocol: a, b", "Sec-WebSocket-Protocol: a"), 400, badProto, nil},
		{"query not ASCII", req("GET /ws?name=\xc3\xa9 HTTP/1.1", hostLine, upg, conn, ver, key), 400, badQuery, nil},
		{"origin not allowed", req("GET /strict HTTP/1.1", hostLine, upg, conn, ver, key, "Origin: https://evil.example.net"), 403, badOrigin, nil},
		{"origin: wildcard is not the apex", req("GET /strict HTTP/1.1", hostLine, upg, conn, ver, key, "Origin: https://example.org"), 403, badOrigin, nil},
		{"origin: other scheme", req("GET /strict HTTP/1.1", hostLine, upg, conn, ver, key, "Origin: http://app.example.com"), 403, badOrigin, nil},
		{"origin: other port", req("GET /strict HTTP/1.1", hostLine, upg, conn, ver, key, "Origin: https://app.example.com:8443"), 403, badOrigin, nil},
		{"origin: suffix without a dot", req("GET /strict HTTP/1.1", hostLine, upg, conn, ver, key, "Origin: https://evilexample.org"), 403, badOrigin, nil},
		{"origin null", req("GET /strict HTTP/1.1", hostLine, upg, conn, ver, key, "Origin: null"), 403, badOrigin, nil},
		{"protocol checked before origin", req("GET /strict HTTP/1.1", hostLine, upg, conn, ver, "Origin: https://evil.example.net"), 400, noKey, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := exchange(t, gw.Addr, tt.req)
			if rc.resp.StatusCode != tt.status || string(rc.body) != tt.body {
				t.Fatalf("got %d %q, want %d %q", rc.resp.StatusCode, rc.body, tt.status, tt.body)
			}
			if ct := rc.resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q, want text/plain; charset=utf-8", ct)
			}
			for k, v := range tt.header {
				if got := rc.resp.Header.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s: got %q, want %q", k, got, v)
				}
			}
		})
	}
	if n := up.accepts.Load(); n != 0 {
		t.Fatalf("rejected handshakes opened %d upstream connections", n)
	}
	// One log line per rejection, with its status (docs/operations.md "Other log lines").
	for _, tt := range tests {
		if len(gw.Logs.Lines(`"event":"rejected"`, fmt.Sprintf(`"status":%d`, tt.status))) == 0 {
			t.Errorf("no rejection logged with status %d", tt.status)
		}
	}
	if n := len(gw.Logs.Lines(`"event":"rejected"`)); n != len(tests) {
		t.Errorf("%d rejections logged, want %d", n, len(tests))
	}

	// What browsers and other clients send that is valid: token lists,
	// any case, and any Origin on a route without origins.
	for _, r := range []string{
		req("GET /ws HTTP/1.1", hostLine, upg, conn, ver, key, "Origin: https://anything.example.net"),
		req("GET /ws HTTP/1.1", hostLine, upg, "Connection: keep-alive, Upgrade", ver, key),
		req("GET /ws HTTP/1.1", hostLine, upg, "Connection: keep-alive", "Connection: upgrade", ver, key),
		req("GET /ws HTTP/1.1", hostLine, "Upgrade: WebSocket", "Connection: UPGRADE", ver, key),
		req("GET /ws HTTP/1.1", hostLine, upg, conn, ver, "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEC=="), // RFC 6455 §4.1's example
	} {
		rc := exchange(t, gw.Addr, r)
		if rc.resp.StatusCode != 101 {
			t.Errorf("valid request %q: got %d %q", r, rc.resp.StatusCode, rc.body)
		}
		rc.Close()
	}
	before := up.Count()

	// The same route admits what its origins allow, and a request without
	// Origin (non-browser clients send none).
	for i, origin := range []string{"https://app.example.com", "https://chat.example.org", "https://a.b.example.org", "HTTPS://App.Example.COM:443", ""} {
		extra := []string{}
		if origin != "" {
			extra = append(extra, "Origin: "+origin)
		}
		rc := dialWS(t, gw.Addr, upgradeRequest(host, "/strict", extra...))
		rc.echoes(t, fmt.Sprintf("origin %d", i))
		rc.Close()
		if n := up.Count(); n != before+i+1 {
			t.Fatalf("origin %q: upstream saw %d requests, want %d", origin, n, before+i+1)
		}
	}
}

// TestRoutingPrecedence: exact host > wildcard host > no host, then the
// longest path prefix on segment boundaries; the request reaches the
// upstream of the route that wins.
func TestRoutingPrecedence(t *testing.T) {
	t.Parallel()
	greet := &opts101{greet: true}
	exact := newUpstream(t, "exact", accept101(greet))
	wild := newUpstream(t, "wild", accept101(greet))
	deepWild := newUpstream(t, "deepwild", accept101(greet))
	any := newUpstream(t, "any", accept101(greet))
	deep := newUpstream(t, "deep", accept101(greet))
	root := newUpstream(t, "root", accept101(greet))
	gw := startGateway(t, e2eHead+fmt.Sprintf(`routes:
  - name: exact
    host: chat.example.com
    path: /ws
    upstreams: [%s]
  - name: wild
    host: "*.example.com"
    path: /ws
    upstreams: [%s]
  - name: deepwild
    host: "*.eu.example.com"
    path: /ws
    upstreams: [%s]
  - name: any
    path: /ws
    upstreams: [%s]
  - name: deep
    path: /ws/deep
    upstreams: [%s]
  - name: rootonly
    host: root.example.net
    path: /
    upstreams: [%s]
`, exact.URL, wild.URL, deepWild.URL, any.URL, deep.URL, root.URL))
	tests := []struct{ host, path, want string }{
		{"chat.example.com", "/ws", "exact"},
		{"CHAT.Example.COM:8080", "/ws/x", "exact"},
		{"chat.example.com.", "/ws", "exact"},
		{"chat.example.com", "/ws/deep", "exact"}, // the host decides first
		{"x.example.com", "/ws", "wild"},
		{"a.b.example.com", "/ws/", "wild"},
		{"x.eu.example.com", "/ws", "deepwild"},
		{"example.com", "/ws", "any"}, // a wildcard never matches its apex
		{"other.org", "/ws", "any"},
		{"other.org", "/ws/deep", "deep"},
		{"other.org", "/ws/deep/1", "deep"},
		{"other.org", "/ws/deeper", "any"},
		{"x.example.com", "/ws/deep", "wild"},
		{"root.example.net", "/anything/at/all", "root"},
		{"root.example.net", "/ws", "root"},
		{"chat.example.com", "/ws/../ws/a", "exact"},
	}
	for _, tt := range tests {
		rc := dialWS(t, gw.Addr, upgradeRequest(tt.host, tt.path))
		if got := rc.greeting(t); got != tt.want {
			t.Errorf("Host %s %s: routed to %s, want %s", tt.host, tt.path, got, tt.want)
		}
		rc.Close()
	}
	for _, tt := range []struct{ host, path string }{
		{"chat.example.com", "/wsx"},
		{"other.org", "/"},
		{"x.example.com", "/w"},
	} {
		rc := exchange(t, gw.Addr, upgradeRequest(tt.host, tt.path))
		if rc.resp.StatusCode != 404 || string(rc.body) != "no route for this host and path\n" {
			t.Errorf("Host %s %s: got %d %q, want 404", tt.host, tt.path, rc.resp.StatusCode, rc.body)
		}
	}
}

// TestHandshakeDraining: once a graceful shutdown has begun, new handshakes
// get 503 with Retry-After and Connection: close, and are not dialled.
func TestHandshakeDraining(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	gw := startGateway(t, routeYAML([]string{up.URL}))
	dialWS(t, gw.Addr, upgradeRequest("chat.example.com", "/ws")).Close()
	waitFor(t, "session end", func() bool { return gw.Sessions() == 0 })
	gw.Shutdown(context.Background()) // no session: returns at once, listener still open
	rc := exchange(t, gw.Addr, upgradeRequest("chat.example.com", "/ws"))
	if rc.resp.StatusCode != 503 || string(rc.body) != "gateway is shutting down\n" {
		t.Fatalf("got %d %q, want 503 gateway is shutting down", rc.resp.StatusCode, rc.body)
	}
	if rc.resp.Header.Get("Retry-After") == "" || !rc.resp.Close {
		t.Errorf("Retry-After %q, Connection %q: want a Retry-After and Connection: close",
			rc.resp.Header.Get("Retry-After"), rc.resp.Header.Values("Connection"))
	}
	if n := up.Count(); n != 1 {
		t.Errorf("upstream saw %d requests, want only the one from before the shutdown", n)
	}
}

package proxy

// HTTP traffic on a route (http.go), end to end on real sockets: net/http
// upstreams, Go's HTTP client and raw requests through the gateway.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wsgate/internal/config"
)

// appUpstream is an application server: net/http on 127.0.0.1, recording
// each request; WebSocket upgrades get a gorilla echo whose first message
// is the server's name, and other requests go to handle (nil: 200 with the
// server's name as the body).
type appUpstream struct {
	Name string
	URL  string // http://127.0.0.1:port
	srv  *httptest.Server

	mu   sync.Mutex
	reqs []*http.Request // clones, bodies not kept
	n    atomic.Int64
}

func newAppUpstream(t testing.TB, name string, handle http.HandlerFunc) *appUpstream {
	t.Helper()
	u := &appUpstream{Name: name}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.n.Add(1)
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(r.Context()))
		u.mu.Unlock()
		if websocket.IsWebSocketUpgrade(r) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.WriteMessage(websocket.TextMessage, []byte(name))
			for {
				mt, msg, err := c.ReadMessage()
				if err != nil {
					return
				}
				if c.WriteMessage(mt, msg) != nil {
					return
				}
			}
		}
		if handle != nil {
			handle(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, name)
	}))
	u.URL = u.srv.URL
	t.Cleanup(u.srv.Close)
	return u
}

// last is the last request the upstream received.
func (u *appUpstream) last(t testing.TB) *http.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatalf("upstream %s received no request", u.Name)
	}
	return u.reqs[len(u.reqs)-1]
}

// httpRouteYAML is a config with one http: proxy route.
func httpRouteYAML(path string, upstreams []string, extra string) string {
	return e2eHead + fmt.Sprintf("routes:\n  - name: app\n    path: %s\n    upstreams: [%s]\n    http: proxy\n%s",
		path, strings.Join(upstreams, ", "), extra)
}

// httpClient is a client that never reuses a jar and keeps no cookies of
// its own; each test sends the cookies it means to.
func httpClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}
}

func get(t testing.TB, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// httpLogs are the gateway's "event":"http" access lines.
func httpLogs(logs *syncBuffer) []map[string]any {
	var out []map[string]any
	for _, l := range logs.Lines(`"event":"http"`) {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestHTTPProxyHeadersAndPath: a request through an http: proxy route
// reaches the upstream with the upgrade path's header rules — hop-by-hop
// headers (and those Connection names) dropped, X-Forwarded-*/Forwarded
// set from the TCP peer and the client's own dropped (it is not a trusted
// proxy), set_headers, strip_prefix with the query kept — and the answer
// comes back with its status, headers and body; one access line and the
// request metrics.
func TestHTTPProxyHeadersAndPath(t *testing.T) {
	t.Parallel()
	up := newAppUpstream(t, "A", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App", "yes")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "created "+r.Method)
	})
	gw := startAdminGateway(t, httpRouteYAML("/app", []string{up.URL + "/base"},
		"    strip_prefix: true\n    set_headers: {X-Gateway: wsgate}\n"), false)

	req, _ := http.NewRequest(http.MethodPost, "http://"+gw.Addr+"/app/items/7?x=1&y=%2F", strings.NewReader("hello"))
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("Forwarded", "for=203.0.113.9")
	req.Header.Set("X-Gateway", "forged")
	req.Header.Set("X-Custom", "kept")
	resp, err := httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || string(body) != "created POST" || resp.Header.Get("X-App") != "yes" {
		t.Fatalf("answer %d %q X-App=%q", resp.StatusCode, body, resp.Header.Get("X-App"))
	}

	r := up.last(t)
	if r.URL.Path != "/base/items/7" || r.URL.RawQuery != "x=1&y=%2F" {
		t.Errorf("upstream got %s?%s, want /base/items/7?x=1&y=%%2F", r.URL.Path, r.URL.RawQuery)
	}
	if r.Host != strings.TrimPrefix(up.URL, "http://") {
		t.Errorf("Host %q, want the upstream's", r.Host)
	}
	for _, h := range []string{"X-Hop", "Keep-Alive"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("hop-by-hop %s reached the upstream: %q", h, v)
		}
	}
	if got := r.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want only the TCP peer 127.0.0.1", got)
	}
	if got := r.Header.Get("Forwarded"); !strings.HasPrefix(got, "for=127.0.0.1;host=") || strings.Contains(got, "203.0.113.9") {
		t.Errorf("Forwarded %q", got)
	}
	if r.Header.Get("X-Forwarded-Proto") != "http" || r.Header.Get("X-Forwarded-Host") != gw.Addr {
		t.Errorf("X-Forwarded-Proto %q, X-Forwarded-Host %q", r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	}
	if r.Header.Get("X-Gateway") != "wsgate" || r.Header.Get("X-Custom") != "kept" {
		t.Errorf("X-Gateway %q (set_headers wins), X-Custom %q", r.Header.Get("X-Gateway"), r.Header.Get("X-Custom"))
	}
	if r.ContentLength != 5 {
		t.Errorf("body length %d, want 5", r.ContentLength)
	}

	var line map[string]any
	waitFor(t, "the http access line", func() bool {
		l := httpLogs(gw.Logs)
		if len(l) > 0 {
			line = l[0]
		}
		return line != nil
	})
	want := map[string]string{"route": "app", "client": "127.0.0.1", "method": "POST", "path": "/app/items/7",
		"status": "201", "bytes_in": "5", "bytes_out": "12", "upstream": up.URL + "/base"}
	for k, v := range want {
		if got := fmt.Sprint(line[k]); got != v {
			t.Errorf("access line %s = %q, want %q (%v)", k, got, v, line)
		}
	}
	if _, ok := line["duration"].(float64); !ok {
		t.Errorf("access line has no duration: %v", line)
	}
	series := wsgateSeries(t, scrape(t, gw.AdminAddr))
	if series[seriesKey("wsgate_http_requests_total", "code", "201", "route", "app")] != 1 {
		t.Errorf("wsgate_http_requests_total{route=app,code=201} = %v", series[seriesKey("wsgate_http_requests_total", "code", "201", "route", "app")])
	}
	if series[seriesKey("wsgate_http_request_seconds_count", "route", "app")] != 1 {
		t.Errorf("wsgate_http_request_seconds_count{route=app} = %v", series[seriesKey("wsgate_http_request_seconds_count", "route", "app")])
	}
}

// TestHTTPRejectByDefault: a route without http: answers non-upgrade
// requests as before (426 for GET, 405 for other methods), upgrades work on
// an http: proxy route, and a non-websocket Upgrade is proxied as a plain
// request.
func TestHTTPRejectByDefault(t *testing.T) {
	t.Parallel()
	up := newAppUpstream(t, "A", nil)
	gw := startGateway(t, e2eHead+fmt.Sprintf(`routes:
  - {name: ws, path: /ws, upstreams: [%s]}
  - {name: app, path: /, upstreams: [%s], http: proxy}
`, up.URL, up.URL))
	if resp, _ := get(t, "http://"+gw.Addr+"/ws/page"); resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("GET on a route without http: %d, want 426", resp.StatusCode)
	}
	resp, err := httpClient().Post("http://"+gw.Addr+"/ws/page", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST on a route without http: %d, want 405", resp.StatusCode)
	}
	if n := up.n.Load(); n != 0 {
		t.Errorf("the upstream got %d requests from a route without http:", n)
	}
	if resp, body := get(t, "http://"+gw.Addr+"/page", "Upgrade", "h2c", "Connection", "Upgrade"); resp.StatusCode != 200 || body != "A" {
		t.Errorf("Upgrade: h2c on the proxy route: %d %q, want the page", resp.StatusCode, body)
	}
	if h := up.last(t).Header.Get("Upgrade"); h != "" {
		t.Errorf("the upstream got Upgrade: %q", h)
	}
	c, _, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/chat", nil)
	if err != nil {
		t.Fatalf("upgrade on the proxy route: %v", err)
	}
	_, msg, err := c.ReadMessage()
	c.Close()
	if err != nil || string(msg) != "A" {
		t.Errorf("upgrade on the proxy route: %q %v", msg, err)
	}
}

// TestHTTPStreamingSSEAndLongPoll: an SSE response is delivered event by
// event — the upstream sends the next event only after the client has
// read the previous one through the gateway, so buffering would deadlock
// into the test's timeout — and a long-poll that the upstream holds for
// 20 s (twice handshake_timeout) completes.
func TestHTTPStreamingSSEAndLongPoll(t *testing.T) {
	t.Parallel()
	const events = 5
	got := make(chan int, events)
	up := newAppUpstream(t, "A", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			fl := w.(http.Flusher)
			for i := range events {
				fmt.Fprintf(w, "data: event %d\n\n", i)
				fl.Flush()
				select {
				case n := <-got:
					if n != i {
						return
					}
				case <-time.After(20 * time.Second):
					return // the event never reached the client
				}
			}
		case "/poll":
			time.Sleep(20 * time.Second)
			_, _ = io.WriteString(w, "news")
		}
	})
	gw := startGateway(t, strings.Replace(httpRouteYAML("/", []string{up.URL}, ""),
		"server:\n", "server:\n  handshake_timeout: 10s\n", 1))

	resp, err := httpClient().Get("http://" + gw.Addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for i := range events {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("event %d: %v (the gateway held it back)", i, err)
		}
		if line != fmt.Sprintf("data: event %d\n", i) {
			t.Fatalf("event %d: %q", i, line)
		}
		_, _ = br.ReadString('\n')
		got <- i
	}
	resp.Body.Close()

	start := time.Now()
	resp, body := get(t, "http://"+gw.Addr+"/poll")
	if resp.StatusCode != 200 || body != "news" {
		t.Fatalf("long-poll: %d %q after %v", resp.StatusCode, body, time.Since(start))
	}
}

// TestHTTPBodyLimits: a 20 MiB body on a route with max_request_body_bytes
// 10MiB gets 413 and never reaches the upstream, with a Content-Length and
// without one (chunked: cut at the cap); a 50 MiB upload on a route that
// allows it streams to the upstream while the gateway's heap grows by less
// than 8 MiB. Not parallel: it measures the process's heap.
func TestHTTPBodyLimits(t *testing.T) {
	var received atomic.Int64
	up := newAppUpstream(t, "A", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		received.Add(n)
		fmt.Fprint(w, n)
	})
	gw := startGateway(t, e2eHead+fmt.Sprintf(`routes:
  - {name: small, path: /small, upstreams: [%s], http: proxy, max_request_body_bytes: 10MiB}
  - {name: big, path: /big, upstreams: [%s], http: proxy, max_request_body_bytes: 64MiB}
`, up.URL, up.URL))

	resp, err := httpClient().Post("http://"+gw.Addr+"/small", "application/octet-stream", bytes.NewReader(make([]byte, 20<<20)))
	if err == nil {
		resp.Body.Close()
	}
	// Go's client may see the gateway close while it still sends; the
	// answer, when it gets one, is 413.
	if err == nil && resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("20 MiB with Content-Length: %d, want 413", resp.StatusCode)
	}
	if n := up.n.Load(); n != 0 {
		t.Errorf("the upstream received %d requests; a body over the cap must not reach it", n)
	}
	// Raw, to read the answer however early it comes.
	status := rawStatus(t, gw.Addr, "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 20971520\r\n\r\n")
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("20 MiB announced: %d, want 413", status)
	}
	if n := up.n.Load(); n != 0 {
		t.Errorf("the upstream received %d requests", n)
	}

	// 50 MiB through /big, generated as it is sent; the heap is sampled
	// while it streams.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	const upload = 50 << 20
	req, _ := http.NewRequest(http.MethodPut, "http://"+gw.Addr+"/big/upload", io.LimitReader(zeros{}, upload))
	req.ContentLength = -1 // chunked: the gateway cannot know the size in advance
	resp, err = httpClient().Do(req)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != fmt.Sprint(upload) {
		t.Fatalf("50 MiB upload: %d %q", resp.StatusCode, body)
	}
	if grew := int64(peak.Load()) - int64(base); grew >= 8<<20 {
		t.Errorf("the heap grew by %.1f MiB while 50 MiB streamed through; want < 8 MiB", float64(grew)/(1<<20))
	} else {
		t.Logf("heap growth during a 50 MiB upload: %.2f MiB", float64(grew)/(1<<20))
	}

	// Chunked over the cap: cut at 10 MiB, answered 413.
	req, _ = http.NewRequest(http.MethodPut, "http://"+gw.Addr+"/small", io.LimitReader(zeros{}, 20<<20))
	req.ContentLength = -1
	resp, err = httpClient().Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("20 MiB chunked: %d, want 413", resp.StatusCode)
		}
	}
	if got := received.Load(); got > upload+10<<20 {
		t.Errorf("the upstream received %d bytes of the chunked body; the cap is 10 MiB", got-upload)
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// rawStatus sends head on a new connection and returns the answer's status.
func rawStatus(t testing.TB, addr, head string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHTTPRateLimit: rate_limit.requests limits one address's requests
// (429 with Retry-After, counted as kind "requests"), and does not apply
// to upgrades.
func TestHTTPRateLimit(t *testing.T) {
	t.Parallel()
	up := newAppUpstream(t, "A", nil)
	gw := startGateway(t, httpRouteYAML("/", []string{up.URL}, "    rate_limit: {requests: {rate: 1/h, burst: 3}}\n"))
	for i := range 3 {
		if resp, _ := get(t, "http://"+gw.Addr+"/"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	resp, _ := get(t, "http://"+gw.Addr+"/")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th request: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := up.n.Load(); n != 3 {
		t.Errorf("the upstream got %d requests, want 3", n)
	}
	if got := rateHits(gw.Gateway, "app", "requests"); got != 1 {
		t.Errorf("wsgate_rate_limited_total{kind=requests} = %v, want 1", got)
	}
	c, _, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/ws", nil)
	if err != nil {
		t.Fatalf("an upgrade after the request limit: %v", err)
	}
	c.Close()
}

// TestHTTPUpstreamFailures: a dead upstream → 502, one that does not send
// its response headers within http_response_timeout → 504.
func TestHTTPUpstreamFailures(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := newAppUpstream(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	gw := startGateway(t, e2eHead+fmt.Sprintf(`routes:
  - {name: dead, path: /dead, upstreams: [%s], http: proxy}
  - {name: slow, path: /slow, upstreams: [%s], http: proxy, http_response_timeout: 500ms}
`, dead, slow.URL))
	if resp, _ := get(t, "http://"+gw.Addr+"/dead"); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("dead upstream: %d, want 502", resp.StatusCode)
	}
	start := time.Now()
	if resp, _ := get(t, "http://"+gw.Addr+"/slow"); resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("slow upstream: %d after %v, want 504", resp.StatusCode, time.Since(start))
	}
	var statuses []string
	waitFor(t, "two access lines", func() bool {
		statuses = nil
		for _, l := range httpLogs(gw.Logs) {
			statuses = append(statuses, fmt.Sprint(l["route"], " ", l["status"], " ", l["error"] != nil))
		}
		return len(statuses) == 2
	})
	if !slices.Contains(statuses, "dead 502 true") || !slices.Contains(statuses, "slow 504 true") {
		t.Errorf("access lines: %v", statuses)
	}
}

// TestHTTPPassiveHealthShared: an upstream that failed an HTTP request is
// skipped by the next upgrades (one pool, one view of health): with round
// robin over [dead, alive], the request is retried on alive (nothing was
// sent to dead), and then every upgrade dials alive at the first attempt.
func TestHTTPPassiveHealthShared(t *testing.T) {
	t.Parallel()
	alive := newAppUpstream(t, "alive", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	gw := startAdminGateway(t, httpRouteYAML("/", []string{dead, alive.URL}, ""), false)
	// Round robin starts at dead: the first request fails over to alive.
	if resp, body := get(t, "http://"+gw.Addr+"/"); resp.StatusCode != 200 || body != "alive" {
		t.Fatalf("first request: %d %q, want alive's answer after the retry", resp.StatusCode, body)
	}
	series := wsgateSeries(t, scrape(t, gw.AdminAddr))
	if up := series[seriesKey("wsgate_upstream_up", "route", "app", "upstream", dead)]; up != 0 {
		t.Fatalf("wsgate_upstream_up for the dead upstream = %v, want 0 after the failed request", up)
	}
	const upgrades = 6
	for i := range upgrades {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/ws", nil)
		if err != nil {
			t.Fatalf("upgrade %d: %v", i, err)
		}
		_, msg, _ := c.ReadMessage()
		c.Close()
		if string(msg) != "alive" {
			t.Fatalf("upgrade %d reached %q", i, msg)
		}
	}
	// One dial per upgrade: the dead upstream was never tried again.
	series = wsgateSeries(t, scrape(t, gw.AdminAddr))
	if n := series[seriesKey("wsgate_upstream_dial_seconds_count", "route", "app")]; n != upgrades {
		t.Errorf("%v upstream dials for %d upgrades: the upgrades tried the upstream that had failed an HTTP request", n, upgrades)
	}
}

// stickyOf returns the value of the sticky cookie set by resp, or "".
func stickyOf(t testing.TB, h http.Header, name string) string {
	t.Helper()
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == name {
			if c.Path != "/" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("sticky cookie %q: want Path=/; HttpOnly; SameSite=Lax", c.Raw)
			}
			return c.Value
		}
	}
	return ""
}

// TestHTTPStickyCookie: balance: cookie places a new client by round robin
// and sets the cookie on the HTTP response and on the 101; with it, HTTP
// requests and upgrades stay on one upstream; a forged value, or one that
// names an upstream that is down or that a reload removed, is replaced.
func TestHTTPStickyCookie(t *testing.T) {
	t.Parallel()
	a := newAppUpstream(t, "A", nil)
	b := newAppUpstream(t, "B", nil)
	yaml := httpRouteYAML("/", []string{a.URL, b.URL}, "    balance: cookie\n    sticky_cookie: app_sticky\n")
	gw := startGateway(t, yaml)
	base := "http://" + gw.Addr + "/"

	// Two new clients land on the two upstreams, each with its cookie.
	resp1, body1 := get(t, base)
	resp2, body2 := get(t, base)
	v1, v2 := stickyOf(t, resp1.Header, "app_sticky"), stickyOf(t, resp2.Header, "app_sticky")
	if v1 == "" || v2 == "" || v1 == v2 || body1 == body2 {
		t.Fatalf("two new clients: %q (%q) and %q (%q); want both upstreams, each with its own cookie", body1, v1, body2, v2)
	}
	for _, v := range []string{v1, v2} {
		if strings.Contains(v, "127.0.0.1") || strings.Contains(v, "A") && len(v) < 5 {
			t.Errorf("cookie value %q reveals the upstream", v)
		}
	}
	// With the cookie: always the same upstream, and no new Set-Cookie.
	for range 6 {
		resp, body := get(t, base, "Cookie", "other=1; app_sticky="+v1)
		if body != body1 || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("with %s's cookie: reached %q, Set-Cookie %q", body1, body, resp.Header.Get("Set-Cookie"))
		}
	}
	// Upgrades too; a new one gets the cookie on its 101.
	for range 3 {
		c, resp, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/ws", http.Header{"Cookie": {"app_sticky=" + v2}})
		if err != nil {
			t.Fatal(err)
		}
		_, msg, _ := c.ReadMessage()
		c.Close()
		if string(msg) != body2 || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("upgrade with %s's cookie reached %q (Set-Cookie %q)", body2, msg, resp.Header.Get("Set-Cookie"))
		}
	}
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, msg, _ := c.ReadMessage()
	c.Close()
	v := stickyOf(t, resp.Header, "app_sticky")
	if want := map[string]string{body1: v1, body2: v2}[string(msg)]; v == "" || v != want {
		t.Errorf("a new upgrade reached %q and got cookie %q, want %q", msg, v, want)
	}

	// A forged value is replaced by a real one.
	resp, body := get(t, base, "Cookie", "app_sticky=AAAAAAAAAAAAAAAAAAAAAA")
	if nv := stickyOf(t, resp.Header, "app_sticky"); nv != map[string]string{body1: v1, body2: v2}[body] {
		t.Errorf("forged cookie: reached %q, new cookie %q", body, nv)
	}

	// The upstream of v1 goes down: its clients move, with a new cookie.
	if body1 == "A" {
		a.srv.Close()
	} else {
		b.srv.Close()
	}
	resp, body = get(t, base, "Cookie", "app_sticky="+v1)
	if resp.StatusCode != 200 || body != body2 || stickyOf(t, resp.Header, "app_sticky") != v2 {
		t.Fatalf("cookie of a dead upstream: %d %q, Set-Cookie %q; want %s with its cookie", resp.StatusCode, body, resp.Header.Get("Set-Cookie"), body2)
	}
}

// TestHTTPStickyReload: a reload that removes an upstream makes its cookie
// unknown (replaced); the cookie of an upstream that stays keeps working,
// as it does in another gateway with the same config (the values are
// stable across instances and restarts).
func TestHTTPStickyReload(t *testing.T) {
	t.Parallel()
	a := newAppUpstream(t, "A", nil)
	b := newAppUpstream(t, "B", nil)
	extra := "    balance: cookie\n"
	gw := startGateway(t, httpRouteYAML("/", []string{a.URL, b.URL}, extra))
	values := map[string]string{}
	for range 2 {
		resp, body := get(t, "http://"+gw.Addr+"/")
		values[body] = stickyOf(t, resp.Header, "wsgate_sticky")
	}
	if values["A"] == "" || values["B"] == "" {
		t.Fatalf("cookies %v", values)
	}
	// Another instance with the same config gives the same values.
	gw2 := startGateway(t, httpRouteYAML("/", []string{a.URL, b.URL}, extra))
	for name, v := range values {
		if _, body := get(t, "http://"+gw2.Addr+"/", "Cookie", "wsgate_sticky="+v); body != name {
			t.Errorf("a second instance sends %s's cookie to %q", name, body)
		}
	}
	cfg, err := config.Parse("reload.yaml", []byte(httpRouteYAML("/", []string{b.URL}, extra)))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, "http://"+gw.Addr+"/", "Cookie", "wsgate_sticky="+values["A"])
	if body != "B" || stickyOf(t, resp.Header, "wsgate_sticky") != values["B"] {
		t.Errorf("cookie of a removed upstream: reached %q, Set-Cookie %q", body, resp.Header.Get("Set-Cookie"))
	}
	resp, body = get(t, "http://"+gw.Addr+"/", "Cookie", "wsgate_sticky="+values["B"])
	if body != "B" || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("cookie of a kept upstream: reached %q, Set-Cookie %q", body, resp.Header.Get("Set-Cookie"))
	}
}

// TestHTTPIPHash: with ip_hash, HTTP requests and upgrades of one address
// go to one upstream.
func TestHTTPIPHash(t *testing.T) {
	t.Parallel()
	var ups []string
	for _, n := range []string{"A", "B", "C"} {
		ups = append(ups, newAppUpstream(t, n, nil).URL)
	}
	gw := startGateway(t, httpRouteYAML("/", ups, "    balance: ip_hash\n"))
	_, first := get(t, "http://"+gw.Addr+"/")
	for range 5 {
		if _, body := get(t, "http://"+gw.Addr+"/"); body != first {
			t.Fatalf("ip_hash: requests reached %q and %q", first, body)
		}
		c, _, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, msg, _ := c.ReadMessage()
		c.Close()
		if string(msg) != first {
			t.Fatalf("ip_hash: the upgrade reached %q, the requests %q", msg, first)
		}
	}
}

// TestHTTPShutdown: a shutdown ends event streams at once (they never end
// by themselves: the shutdown would otherwise wait its whole grace), lets a
// request in flight finish with its answer, and refuses new requests.
func TestHTTPShutdown(t *testing.T) {
	t.Parallel()
	slowStarted := make(chan struct{})
	up := newAppUpstream(t, "A", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := 0; ; i++ {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		case "/slow":
			close(slowStarted)
			time.Sleep(time.Second)
			_, _ = io.WriteString(w, "finished")
		}
	})
	gw := startGateway(t, strings.Replace(httpRouteYAML("/", []string{up.URL}, ""),
		"shutdown_grace: 3s", "shutdown_grace: 30s", 1))
	resp, err := httpClient().Get("http://" + gw.Addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: 0\n" {
		t.Fatalf("first event %q %v", line, err)
	}
	slow := make(chan string, 1)
	go func() {
		resp, err := httpClient().Get("http://" + gw.Addr + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	<-slowStarted
	stopped := make(chan struct{})
	go func() {
		gw.stop() // fails the test if the gateway takes over 10 s (the grace is 30 s)
		close(stopped)
	}()
	// The stream ends (EOF or a reset), well before the grace.
	for {
		if _, err := br.ReadString('\n'); err != nil {
			break
		}
	}
	if got := <-slow; got != "200 finished" {
		t.Errorf("the request in flight at shutdown got %q, want its answer", got)
	}
	<-stopped
}

// TestHTTPSUpstream: an https:// upstream (upstream_tls applies) serves
// both kinds of request: HTTP over https, the upgrade over wss.
func TestHTTPSUpstream(t *testing.T) {
	t.Parallel()
	up := websocket.Upgrader{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			c, err := up.Upgrade(w, r, nil)
			if err == nil {
				_ = c.WriteMessage(websocket.TextMessage, []byte("tls ws"))
				c.Close()
			}
			return
		}
		fmt.Fprintf(w, "tls %s %v", r.Proto, r.TLS != nil)
	}))
	t.Cleanup(srv.Close)
	gw := startGateway(t, httpRouteYAML("/", []string{srv.URL}, "    upstream_tls: {insecure_skip_verify: true}\n"))
	if resp, body := get(t, "http://"+gw.Addr+"/"); resp.StatusCode != 200 || body != "tls HTTP/1.1 true" {
		t.Errorf("https upstream: %d %q", resp.StatusCode, body)
	}
	c, _, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/ws", nil)
	if err != nil {
		t.Fatalf("upgrade to the https upstream: %v", err)
	}
	_, msg, _ := c.ReadMessage()
	c.Close()
	if string(msg) != "tls ws" {
		t.Errorf("upgrade got %q", msg)
	}
}

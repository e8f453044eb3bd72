package proxy

// Tests of the admin listener (docs/operations.md, server.admin_listen):
// /healthz, /readyz, /metrics and /debug/pprof/ answer there, and only
// there: on the public listeners the same paths are WebSocket handshakes
// like any other and get the handshake's answers (404, 405, 426, or the
// redirect to https).

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"wsgate/internal/config"

	"github.com/rs/zerolog"
)

// adminGateway is a gateway serving a plain listener, an admin listener and,
// when asked, a TLS listener, all on fresh 127.0.0.1 ports.
type adminGateway struct {
	*Gateway
	Addr      string // plain listener (ws://)
	TLSAddr   string // TLS listener (wss://), "" without TLS
	AdminAddr string
	Logs      *syncBuffer
	stop      func()
}

// startAdminGateway parses yamlText (its listen addresses are ignored) and
// serves it until the test ends.
func startAdminGateway(t testing.TB, yamlText string, withTLS bool) *adminGateway {
	t.Helper()
	return startAdminGatewayWith(t, yamlText, withTLS, nil)
}

// startAdminGatewayWith is startAdminGateway with setup run on the gateway
// before it serves (to change what tests may change, such as the events'
// back-off).
func startAdminGatewayWith(t testing.TB, yamlText string, withTLS bool, setup func(g *Gateway)) *adminGateway {
	t.Helper()
	cfg, err := config.Parse("admin-test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yamlText)
	}
	logs := &syncBuffer{}
	g, err := New(cfg, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(g)
	}
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	ls := &Listeners{Plain: listen(), Admin: listen()}
	gw := &adminGateway{Gateway: g, Addr: ls.Plain.Addr().String(), AdminAddr: ls.Admin.Addr().String(), Logs: logs}
	if withTLS {
		ls.TLS = listen()
		gw.TLSAddr = ls.TLS.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, ls) }()
	var once sync.Once
	gw.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("gateway did not stop within 15s")
			}
			if t.Failed() {
				t.Logf("gateway log:\n%s", logs.String())
			}
		})
	}
	t.Cleanup(gw.stop)
	// The admin server starts last in Serve: once it answers, every
	// listener serves.
	waitFor(t, "the admin listener", func() bool {
		resp, err := http.Get("http://" + gw.AdminAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return gw
}

// httpDo sends one request on a fresh connection (no keep-alive, so every
// answer is the listener's own) and returns the status and up to 64 KiB of
// the body.
func httpDo(t testing.TB, client *http.Client, method, url, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	req.Close = true
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, url, host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body)
}

// noRedirect is a client that reports redirects instead of following them.
func noRedirect(tr http.RoundTripper) *http.Client {
	return &http.Client{
		Transport:     tr,
		Timeout:       ioTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// adminPaths are the admin listener's endpoints, as a public client might
// try them.
var adminPaths = []struct{ method, path string }{
	{"GET", "/healthz"},
	{"GET", "/readyz"},
	{"GET", "/metrics"},
	{"GET", "/debug/pprof/"},
	{"GET", "/debug/pprof/goroutine?debug=1"},
	{"GET", "/debug/pprof/cmdline"},
	{"POST", "/drain?route=site"},
}

// publicAnswer is what the handshake logic answers a plain (non-upgrade)
// request on a public listener: 404 when no route matches the host, else
// 405 for anything but GET and 426 for a GET without the Upgrade headers.
func publicAnswer(method string, routed bool) int {
	switch {
	case !routed:
		return http.StatusNotFound
	case method != http.MethodGet:
		return http.StatusMethodNotAllowed
	}
	return http.StatusUpgradeRequired
}

// adminRoutes has one route that catches every path of site.test, so that
// /healthz there is a WebSocket route like any other, and nothing for
// other.test.
const adminRoutes = `  - {name: site, host: site.test, path: /, upstreams: ["builtin:echo"]}
`

// checkAdminServes checks every admin endpoint on the admin listener.
func checkAdminServes(t *testing.T, gw *adminGateway) {
	t.Helper()
	c := noRedirect(&http.Transport{})
	base := "http://" + gw.AdminAddr
	for _, tc := range []struct {
		path, contains string
	}{
		{"/healthz", "ok"},
		{"/readyz", "ready"},
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile:"},
		{"/debug/pprof/cmdline", ""},
		{"/metrics", "# TYPE wsgate_sessions_total counter"},
	} {
		status, body := httpDo(t, c, "GET", base+tc.path, "")
		if status != http.StatusOK || !strings.Contains(body, tc.contains) {
			t.Errorf("admin GET %s: %d %.200q, want 200 containing %q", tc.path, status, body, tc.contains)
		}
	}
	// The admin listener is not a WebSocket listener: it relays nothing.
	status, _ := httpDo(t, c, "GET", base+"/", "site.test")
	if status != http.StatusNotFound {
		t.Errorf("admin GET / (Host site.test): %d, want 404", status)
	}
}

// TestAdminOnlyOnAdminListener: the admin endpoints answer on admin_listen
// and never on the plain listener, where the same paths get the handshake
// logic's 404/405/426.
func TestAdminOnlyOnAdminListener(t *testing.T) {
	t.Parallel()
	gw := startAdminGateway(t, e2eHead+"routes:\n"+adminRoutes, false)
	checkAdminServes(t, gw)
	c := noRedirect(&http.Transport{})
	for _, p := range adminPaths {
		for _, host := range []string{"site.test", "other.test"} {
			status, body := httpDo(t, c, p.method, "http://"+gw.Addr+p.path, host)
			if want := publicAnswer(p.method, host == "site.test"); status != want {
				t.Errorf("public %s %s (Host %s): %d %.100q, want %d", p.method, p.path, host, status, body, want)
			}
		}
	}
	// What the public listener answered went through the handshake logic:
	// each one is a logged and counted rejection.
	if got, want := len(gw.Logs.Lines(`"event":"rejected"`)), 2*len(adminPaths); got != want {
		t.Errorf("%d rejection log lines, want %d", got, want)
	}
}

// TestAdminOnlyOnAdminListenerTLS: with TLS on, neither the TLS listener
// (handshake logic) nor the plain one (redirect to https, like any other
// non-WebSocket request) serves the admin endpoints.
func TestAdminOnlyOnAdminListenerTLS(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "admin test CA")
	leaf := ca.leaf(t, "site.test", "other.test")
	gw := startAdminGateway(t, tlsConfigYAML([]*tlsLeaf{leaf}, "", adminRoutes), true)
	checkAdminServes(t, gw)
	for _, host := range []string{"site.test", "other.test"} {
		tlsClient := noRedirect(&http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: host},
		})
		plainClient := noRedirect(&http.Transport{})
		for _, p := range adminPaths {
			status, body := httpDo(t, tlsClient, p.method, "https://"+gw.TLSAddr+p.path, host)
			if want := publicAnswer(p.method, host == "site.test"); status != want {
				t.Errorf("TLS %s %s (Host %s): %d %.100q, want %d", p.method, p.path, host, status, body, want)
			}
			status, body = httpDo(t, plainClient, p.method, "http://"+gw.Addr+p.path, host)
			if status != http.StatusPermanentRedirect {
				t.Errorf("plain %s %s (Host %s): %d %.100q, want 308 to https", p.method, p.path, host, status, body)
			}
		}
	}
}

// TestAdminReadyzDraining: /readyz turns 503 once the gateway drains;
// /healthz stays 200 while the process runs.
func TestAdminReadyzDraining(t *testing.T) {
	t.Parallel()
	gw := startAdminGateway(t, e2eHead+"routes:\n"+adminRoutes, false)
	c := noRedirect(&http.Transport{})
	base := "http://" + gw.AdminAddr
	if status, body := httpDo(t, c, "GET", base+"/readyz", ""); status != http.StatusOK {
		t.Fatalf("/readyz before shutdown: %d %q", status, body)
	}
	gw.Shutdown(context.Background()) // no session: returns at once
	if status, body := httpDo(t, c, "GET", base+"/readyz", ""); status != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %d %q, want 503", status, body)
	}
	if status, body := httpDo(t, c, "GET", base+"/healthz", ""); status != http.StatusOK {
		t.Errorf("/healthz while draining: %d %q, want 200", status, body)
	}
	// New handshakes are refused meanwhile: a client sees 503, not a relay.
	rc := exchange(t, gw.Addr, upgradeRequest("site.test", "/x"))
	if rc.resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("handshake while draining: %s, want 503", rc.resp.Status)
	}
}

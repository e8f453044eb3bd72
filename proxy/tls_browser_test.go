package proxy

// A real browser through the TLS listener: headless Chromium opens
// wss://gw.test:PORT/… from the page test/browser/wss.html, exchanges text
// and binary messages with an echo upstream, and closes with 4000.

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserTimeout bounds the whole browser test: start, page, session.
const browserTimeout = 60 * time.Second

// chromiumPath finds Debian's chromium. Missing, the test fails under CI
// (CI is set) and is skipped elsewhere.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (apt-get install chromium); the browser test must run under CI")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// browserResult is what wss.html publishes as window.wsgateResult.
type browserResult struct {
	URL        string   `json:"url"`
	Error      string   `json:"error"`
	SawError   bool     `json:"sawError"`
	Protocol   string   `json:"protocol"`
	Extensions string   `json:"extensions"`
	Types      []string `json:"types"`
	Texts      []string `json:"texts"`
	Binaries   []string `json:"binaries"`
	Close      struct {
		Code     int    `json:"code"`
		Reason   string `json:"reason"`
		WasClean bool   `json:"wasClean"`
	} `json:"close"`
}

// TestBrowserWSS: Chromium, trusting the test leaf only through its SPKI
// hash and resolving gw.test to 127.0.0.1, talks wss:// through the gateway
// to a Go echo upstream; the page's results are read back from the page,
// and the upstream must have received Close 4000.
func TestBrowserWSS(t *testing.T) {
	chromium := chromiumPath(t)
	ca := newTLSCA(t, "wsgate browser test CA")
	leaf := ca.leaf(t, "gw.test")
	up := newTLSEchoUpstream(t, nil)
	deflateRoute, deflateTap := deflateBrowserRoute(t) // deflate_browser_test.go
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{leaf}, "", tlsRoute("browser", "/ws", up.URL)+deflateRoute))

	// The page comes from plain http://127.0.0.1 (a page over http may open
	// wss://, and its origin is allowed: the route has no origins list).
	page := httptest.NewServer(http.FileServer(http.Dir("../test/browser")))
	t.Cleanup(page.Close)

	bctx := startChromium(t, chromium, leaf)

	wsURL := "wss://gw.test:" + gw.TLSPort + "/ws/room?x=1"
	if err := chromedp.Do(bctx, chromedp.Navigate(page.URL+"/wss.html?ws="+url.QueryEscape(wsURL))); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	res, err := chromedp.Run(bctx, chromedp.Poll[browserResult](`window.wsgateResult`, chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		t.Fatalf("waiting for the page's result: %v (gateway log:\n%s)", err, gw.Logs.String())
	}
	dom, err := chromedp.Run(bctx, chromedp.TextContent(chromedp.CSS("#result")))
	if err != nil {
		t.Fatalf("reading #result: %v", err)
	}
	if !strings.Contains(dom, `"code":4000`) {
		t.Errorf("#result does not show the close 4000: %.300s", dom)
	}

	if res.Error != "" || res.SawError {
		t.Fatalf("page error %q (error event: %v), close %+v", res.Error, res.SawError, res.Close)
	}
	if res.URL != wsURL {
		t.Errorf("page opened %q, want %q", res.URL, wsURL)
	}
	if res.Extensions != "" {
		t.Errorf("extensions %q negotiated, want none", res.Extensions)
	}
	wantTexts := []string{"hello, wsgate", "héllo ✓ 🌍", strings.Repeat("x", 70000)}
	if len(res.Texts) != len(wantTexts) {
		t.Fatalf("page got %d text echoes, want %d", len(res.Texts), len(wantTexts))
	}
	for i, want := range wantTexts {
		if res.Texts[i] != want {
			t.Errorf("text %d: got %.40q (%d bytes), want %.40q (%d bytes)", i, res.Texts[i], len(res.Texts[i]), want, len(want))
		}
	}
	seq := make([]byte, 300)
	for i := range seq {
		seq[i] = byte(i)
	}
	wantBins := []string{hex.EncodeToString(seq), ""}
	if strings.Join(res.Binaries, ",") != strings.Join(wantBins, ",") {
		t.Errorf("binary echoes %.60q, want %.60q", res.Binaries, wantBins)
	}
	if got := strings.Join(res.Types, ","); got != "text,text,text,binary,binary" {
		t.Errorf("message types %s, want text,text,text,binary,binary", got)
	}
	// The upstream's reply to Close(4000) carries 4000 back.
	if res.Close.Code != 4000 || !res.Close.WasClean {
		t.Errorf("page close event %+v, want a clean 4000", res.Close)
	}

	r := up.request(t)
	if got := r.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto %q, want https", got)
	}
	if got := r.Header.Get("Origin"); got != page.URL {
		t.Errorf("Origin %q reached the upstream, want %q", got, page.URL)
	}
	if code := up.closeCode(t, 10*time.Second); code != 4000 {
		t.Errorf("the upstream received close %d, want 4000", code)
	}
	waitForTLS(t, "the access log line", func() bool {
		return len(gw.Logs.Lines(`"event":"session"`, `"route":"browser"`, `"upstream_close_code":"4000"`)) > 0
	})

	// The same browser with compression negotiated end to end.
	browserDeflate(t, bctx, gw, page.URL, deflateTap)
}

// startChromium starts headless Chromium for one test: gw.test resolves to
// 127.0.0.1 and leaf is trusted through its SPKI hash. The browser is
// stopped (and checked to be gone) when the test ends.
func startChromium(t *testing.T, chromium string, leaf *tlsLeaf) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("host-resolver-rules", "MAP gw.test 127.0.0.1"),
		chromedp.Flag("ignore-certificate-errors-spki-list", leaf.spki()),
		// No UserDataDir: chromedp then makes a fresh profile directory
		// for this browser, passes it as --user-data-dir, removes it at
		// the end and kills every process still using it (zygote, network
		// service).
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	var browser *os.Process
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancel()
		// Cancelling the allocator kills and reaps the browser; should it
		// still run, kill it by its handle (not by a pid that may have
		// been reused).
		if browser != nil {
			if err := browser.Kill(); err == nil {
				t.Errorf("chromium (pid %d) was still running after the allocator was cancelled", browser.Pid)
			}
		}
	})
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	if c := chromedp.FromContext(bctx); c != nil && c.Browser != nil {
		browser = c.Browser.Process()
	}

	return bctx
}

// appPage is the application page of TestBrowserAppOverH2: it opens a
// WebSocket to its own origin, exchanges 20 messages and publishes what
// happened as window.appResult.
const appPage = `<!doctype html><meta charset="utf-8"><title>app</title><pre id="result"></pre><script>
const nav = performance.getEntriesByType('navigation')[0];
const result = { protocol: nav ? nav.nextHopProtocol : '', server: '', echoes: [], error: '' };
const ws = new WebSocket('wss://' + location.host + '/ws/live');
ws.onerror = () => { result.error = 'websocket error'; };
ws.onmessage = (ev) => {
  if (!result.server) {
    result.server = ev.data; // the upstream's greeting
    for (let i = 0; i < 20; i++) ws.send('message ' + i);
    return;
  }
  result.echoes.push(ev.data);
  if (result.echoes.length === 20) ws.close(1000, 'done');
};
ws.onclose = (ev) => {
  result.close = ev.code;
  document.getElementById('result').textContent = JSON.stringify(result);
  window.appResult = result;
};
</script>`

// appResult is what appPage publishes.
type appResult struct {
	Protocol string   `json:"protocol"`
	Server   string   `json:"server"`
	Echoes   []string `json:"echoes"`
	Error    string   `json:"error"`
	Close    int      `json:"close"`
}

// TestBrowserAppOverH2: headless Chromium loads an application's page over
// https through the gateway (an http: proxy route fronting the whole app;
// HTTP/2 negotiated on the TLS listener), and the page opens wss:// to the
// same origin through the same route and exchanges messages.
func TestBrowserAppOverH2(t *testing.T) {
	chromium := chromiumPath(t)
	ca := newTLSCA(t, "wsgate app browser test CA")
	leaf := ca.leaf(t, "gw.test")
	app := newAppUpstream(t, "app-1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, appPage)
	})
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{leaf}, "", tlsRoute("app", "/", app.URL, "http: proxy", "balance: cookie")))
	bctx := startChromium(t, chromium, leaf)

	if err := chromedp.Do(bctx, chromedp.Navigate("https://gw.test:"+gw.TLSPort+"/")); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	res, err := chromedp.Run(bctx, chromedp.Poll[appResult](`window.appResult`, chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		t.Fatalf("waiting for the page's result: %v (gateway log:\n%s)", err, gw.Logs.String())
	}
	if res.Protocol != "h2" {
		t.Errorf("the page came over %q, want h2", res.Protocol)
	}
	if res.Error != "" || res.Server != "app-1" || res.Close != 1000 {
		t.Fatalf("page: error %q, greeting %q, close %d", res.Error, res.Server, res.Close)
	}
	if len(res.Echoes) != 20 || res.Echoes[0] != "message 0" || res.Echoes[19] != "message 19" {
		t.Errorf("echoes %q", res.Echoes)
	}
	waitForTLS(t, "the page's access line and the session's", func() bool {
		return len(gw.Logs.Lines(`"event":"http"`, `"route":"app"`, `"proto":"HTTP/2.0"`, `"status":200`)) > 0 &&
			len(gw.Logs.Lines(`"event":"session"`, `"route":"app"`, `"client_close_code":"1000"`)) > 0
	})
}

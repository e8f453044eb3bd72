package proxy

// Headless Chromium with permessage-deflate through wss:// (run from
// TestBrowserWSS, on the same browser): the page test/browser/deflate.html
// exchanges 1,000 JSON messages, a binary and a large text message with a
// gorilla/websocket upstream that compresses, and closes with 4000.

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// deflateBrowserResult is what deflate.html publishes.
type deflateBrowserResult struct {
	Error      string `json:"error"`
	SawError   bool   `json:"sawError"`
	Extensions string `json:"extensions"`
	Echoed     int    `json:"echoed"`
	Mismatches int    `json:"mismatches"`
	Texts      int    `json:"texts"`
	Binaries   int    `json:"binaries"`
	Close      struct {
		Code     int    `json:"code"`
		Reason   string `json:"reason"`
		WasClean bool   `json:"wasClean"`
	} `json:"close"`
}

// deflateBrowserRoute is the route of the compression page: path /deflate
// to a compressing gorilla upstream (whose wire tap it returns).
func deflateBrowserRoute(t testing.TB) (string, *wireTap) {
	upURL, tap := newDeflateGorillaUpstream(t)
	return tlsRoute("deflate", "/deflate", upURL, "max_message_bytes: 1MiB", "max_frame_bytes: 1MiB"), tap
}

// browserDeflate runs deflate.html in the browser of bctx against gw's
// /deflate route and checks what the page, the upstream's wire and the
// gateway saw.
func browserDeflate(t *testing.T, bctx context.Context, gw *tlsGateway, pageURL string, upTap *wireTap) {
	t.Helper()
	wsURL := "wss://gw.test:" + gw.TLSPort + "/deflate"
	if err := chromedp.Do(bctx, chromedp.Navigate(pageURL+"/deflate.html?ws="+url.QueryEscape(wsURL))); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	res, err := chromedp.Run(bctx, chromedp.Poll[deflateBrowserResult](`window.wsgateResult`, chromedp.WithPollingTimeout(45*time.Second)))
	if err != nil {
		t.Fatalf("waiting for deflate.html's result: %v (gateway log:\n%s)", err, gw.Logs.String())
	}
	t.Logf("deflate.html: %+v", res)
	if res.Error != "" || res.SawError {
		t.Fatalf("page error %q (error event: %v), close %+v", res.Error, res.SawError, res.Close)
	}
	if !strings.HasPrefix(res.Extensions, "permessage-deflate") {
		t.Errorf("extensions %q, want permessage-deflate", res.Extensions)
	}
	const messages = 1002 // 1,000 JSON texts, a binary, a large text
	if res.Echoed != messages || res.Mismatches != 0 || res.Texts != 1001 || res.Binaries != 1 {
		t.Errorf("page: %d echoes, %d mismatches, %d texts, %d binaries; want %d, 0, 1001, 1", res.Echoed, res.Mismatches, res.Texts, res.Binaries, messages)
	}
	if res.Close.Code != 4000 || !res.Close.WasClean {
		t.Errorf("page close event %+v, want a clean 4000", res.Close)
	}
	waitForTLS(t, "the deflate access log line", func() bool {
		return len(gw.Logs.Lines(`"event":"session"`, `"route":"deflate"`, `"compression":"permessage-deflate; server_no_context_takeover; client_no_context_takeover`)) > 0
	})
	// The browser's frames as the upstream read them: every message
	// compressed. Chromium sends each message in one frame, so whether
	// any is fragmented is up to it; the other way, the upstream's large
	// message is.
	s := upTap.stats(t)
	t.Logf("client -> upstream on the wire: %+v", s)
	if s.messages != messages || s.compressed != messages || s.badRsv != 0 {
		t.Errorf("client -> upstream: %+v, want %d messages, all compressed", s, messages)
	}
	// The browser's side is TLS: what it was sent is read off the gateway,
	// which counts wire bytes and inflated bytes apart.
	got := seriesOf(t, gw.Gateway)
	for _, dir := range []string{"client_to_upstream", "upstream_to_client"} {
		c := got[seriesKey("wsgate_compressed_messages_total", "route", "deflate", "direction", dir)]
		wire := got[seriesKey("wsgate_bytes_total", "route", "deflate", "direction", dir)]
		inflated := got[seriesKey("wsgate_inflated_bytes_total", "route", "deflate", "direction", dir)]
		if c != messages || wire >= inflated/2 {
			t.Errorf("%s: %v compressed messages, %v bytes on the wire for %v inflated; want %d, less than half", dir, c, wire, inflated, messages)
		}
	}
}

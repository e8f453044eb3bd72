package proxy

// In-process tests of the lifecycle (docs/relay.md "Graceful shutdown", "Reload
// without dropping sessions"; issue 9): what Shutdown does with peers that
// never answer and with handshakes still in flight, what Reload keeps and
// re-reads, and the admin drain's answers. The real binary is driven by
// signals in cmd/wsgate/lifecycle_test.go.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/handshake"
	"wsgate/internal/config"
	"wsgate/internal/wstest"
)

// TestShutdownCutsAtGrace: a client and an upstream that never answer the
// shutdown Close are cut when shutdown_grace runs out (here before their
// close_timeout would), and Shutdown returns with no session left.
func TestShutdownCutsAtGrace(t *testing.T) {
	t.Parallel()
	up, peers := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, "server.shutdown_grace", "1s", "close_timeout", "10s"))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, peers)
	// The 101 is out before the session is registered.
	waitFor(t, "session", func() bool { return gw.Sessions() == 1 })
	start := time.Now()
	done := make(chan time.Duration, 1)
	go func() {
		gw.Shutdown(context.Background())
		done <- time.Since(start)
	}()
	// Both get their Close, and neither answers.
	c.ExpectClose(1001, "gateway shutting down")
	u.ExpectClose(1001, "gateway shutting down")
	var took time.Duration
	select {
	case took = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return within 5s (shutdown_grace 1s)")
	}
	if took < 900*time.Millisecond || took > 2*time.Second {
		t.Errorf("Shutdown returned after %v, want about shutdown_grace (1s)", took)
	}
	if n := gw.Sessions(); n != 0 {
		t.Errorf("Shutdown returned with %d sessions still open: peers that never answer must be cut at shutdown_grace", n)
	}
	c.ExpectDropped()
	u.ExpectDropped()
	if since := time.Since(start); since > 2500*time.Millisecond {
		t.Errorf("peers cut %v after the shutdown began, want about 1s", since)
	}
}

// TestShutdownHandshakeInFlight: a handshake that passed the draining check
// just before the drain began (its upstream still answering) becomes a
// session after the drain listed the open ones. It must still get the
// shutdown Close, and Serve's drain waits for it.
func TestShutdownHandshakeInFlight(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	asked := make(chan struct{})
	ups := make(chan *wstest.Peer, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		_ = conn.SetDeadline(time.Now().Add(relayIO))
		br := bufio.NewReader(conn)
		req, err := http.ReadRequest(br)
		if err != nil {
			conn.Close()
			return
		}
		hs, _ := handshake.Check(req)
		close(asked)
		time.Sleep(300 * time.Millisecond) // Shutdown begins meanwhile
		_, _ = conn.Write(handshake.AppendResponse101(nil, hs.Key, "", nil))
		_ = conn.SetDeadline(time.Time{})
		ups <- &wstest.Peer{Conn: conn, BR: br}
	}()
	gw := startGateway(t, relayYAML("ws://"+ln.Addr().String(), "server.shutdown_grace", "3s", "close_timeout", "10s"))
	type dialed struct {
		p   *wstest.Peer
		err error
	}
	cc := make(chan dialed, 1)
	go func() {
		p, err := wstest.DialRawErr(gw.Addr, "/")
		cc <- dialed{p, err}
	}()
	select {
	case <-asked:
	case <-time.After(relayIO):
		t.Fatal("the upstream saw no handshake")
	}
	// Serve's drain, as on SIGTERM (it knows the requests in flight).
	start := time.Now()
	done := make(chan time.Duration, 1)
	go func() {
		gw.stop()
		done <- time.Since(start)
	}()
	d := <-cc
	if d.err != nil {
		t.Fatalf("the handshake in flight failed: %v", d.err)
	}
	c := d.p
	c.T = t
	u := <-ups
	u.T = t
	// Both answer at once, like well-behaved peers.
	c.ExpectClose(1001, "gateway shutting down")
	c.SendClose(1001, "")
	u.ExpectClose(1001, "gateway shutting down")
	u.SendClose(1001, "")
	c.ExpectEOF(2 * time.Second)
	u.Conn.Close()
	select {
	case took := <-done:
		if took > 1500*time.Millisecond {
			t.Errorf("Serve took %v to return; the late session ended well before shutdown_grace (3s)", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("Serve returned after %v, before the session in its handshake was over", took)
	}
}

// TestReloadKeepsServerSettings: `server:` changes need a restart; a reload
// logs a warning naming the keys and keeps their old values, while the rest
// of the new config applies. A reload that changes nothing under server:
// warns about nothing.
func TestReloadKeepsServerSettings(t *testing.T) {
	t.Parallel()
	up := newGorillaUpstream(t, nil)
	gw := startGateway(t, relayYAML(up.URL))
	same, err := config.Parse("test.yaml", []byte(relayYAML(up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Reload(same); err != nil {
		t.Fatal(err)
	}
	if l := gw.Logs.Lines("need a restart"); len(l) != 0 {
		t.Errorf("an unchanged server block warned: %q", l)
	}
	next, err := config.Parse("test.yaml", []byte(relayYAML(up.URL, "server.shutdown_grace", "5s",
		"server.close_spread", "1s", "server.shutdown_close_code", "1012", "close_timeout", "700ms")))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Reload(next); err != nil {
		t.Fatal(err)
	}
	w := gw.Logs.Lines(`"level":"warn"`, "need a restart")
	if len(w) != 1 {
		t.Fatalf("want one warning about server settings, got %q\nlogs:\n%s", w, gw.Logs.String())
	}
	for _, k := range []string{"server.shutdown_grace", "server.close_spread", "server.shutdown_close_code"} {
		if !strings.Contains(w[0], k) {
			t.Errorf("the warning does not name %s: %s", k, w[0])
		}
	}
	s := gw.Config().Server
	if s.ShutdownGrace != 3*time.Second || s.CloseSpread != 0 || s.ShutdownCloseCode != 1001 {
		t.Errorf("server settings after reload: grace %v spread %v code %d, want the old 3s 0s 1001",
			s.ShutdownGrace, s.CloseSpread, s.ShutdownCloseCode)
	}
	if ct := gw.Config().Defaults.CloseTimeout; ct != 700*time.Millisecond {
		t.Errorf("defaults.close_timeout after reload = %v, want the new 700ms", ct)
	}
	// New sessions take the kept shutdown_close_code, not the reloaded one.
	c := wstest.DialRaw(t, gw.Addr, "/")
	waitFor(t, "session", func() bool { return gw.Sessions() == 1 })
	go gw.Shutdown(context.Background())
	c.ExpectClose(1001, "gateway shutting down")
	c.SendClose(1001, "")
}

// TestReloadDuringShutdown: once draining, a reload is refused (it would
// drain or re-route sessions the shutdown is already closing).
func TestReloadDuringShutdown(t *testing.T) {
	t.Parallel()
	up := newGorillaUpstream(t, nil)
	gw := startGateway(t, relayYAML(up.URL))
	gw.Shutdown(context.Background())
	cfg, err := config.Parse("test.yaml", []byte(relayYAML(up.URL, "close_timeout", "700ms")))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Reload(cfg); err == nil {
		t.Error("Reload while shutting down succeeded")
	}
	if ct := gw.Config().Defaults.CloseTimeout; ct != 300*time.Millisecond {
		t.Errorf("close_timeout %v: the refused config was swapped in", ct)
	}
}

// TestReloadStaticCertificates: SIGHUP re-reads tls.certificates: after the
// files are replaced (a renewal), the next TLS handshake gets the new
// certificate, while an open wss:// session keeps running. Files that no
// longer load leave the certificates in force.
func TestReloadStaticCertificates(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "reload CA")
	first, second := ca.leaf(t, "a.test"), ca.leaf(t, "a.test")
	dir := t.TempDir()
	live := &tlsLeaf{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	install := func(l *tlsLeaf) {
		t.Helper()
		for src, dst := range map[string]string{l.certFile: live.certFile, l.keyFile: live.keyFile} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(first)
	up := newTLSEchoUpstream(t, nil)
	yamlText := tlsConfigYAML([]*tlsLeaf{live}, "", tlsRoute("echo", "/echo", up.URL))
	gw := startTLSGateway(t, yamlText)
	served := func() string {
		t.Helper()
		c, err := gw.tlsDial(&tls.Config{RootCAs: ca.pool, ServerName: "a.test"})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got := served(); got != first.cert.SerialNumber.String() {
		t.Fatalf("serving certificate %s, want the first one %s", got, first.cert.SerialNumber)
	}
	open := gw.wssDial(t, ca, "a.test", "/echo")
	defer open.Close()

	install(second)
	if got := served(); got != first.cert.SerialNumber.String() {
		t.Errorf("certificate changed to %s before the reload", got)
	}
	cfg, err := config.Parse("tls-test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := served(); got != second.cert.SerialNumber.String() {
		t.Errorf("after the reload: serving %s, want the new certificate %s", got, second.cert.SerialNumber)
	}
	tlsEchoRoundTrip(t, open) // the session from before the swap still relays

	// Files broken between the load and the swap: Reload fails and the
	// certificate in force stays.
	if err := os.WriteFile(live.certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := gw.Reload(cfg); err == nil {
		t.Error("Reload with an unreadable certificate succeeded")
	}
	if got := served(); got != second.cert.SerialNumber.String() {
		t.Errorf("after a failed reload: serving %s, want %s still", got, second.cert.SerialNumber)
	}
}

// TestDrainHandler: POST /drain answers 405, 400 and 404 for requests it
// cannot act on; ?upstream= closes exactly that upstream's sessions (1012
// to the client, 1001 upstream) and takes it out of the rotation until the
// next reload; ?route= closes that route's sessions.
func TestDrainHandler(t *testing.T) {
	t.Parallel()
	u1, u2 := newGorillaUpstream(t, nil), newGorillaUpstream(t, nil)
	yamlText := fmt.Sprintf(`server:
  shutdown_grace: 3s
  close_spread: 200ms
defaults:
  close_timeout: 500ms
routes:
  - name: pair
    path: /
    upstreams: [%q, %q]
`, u1.URL, u2.URL)
	gw := startGateway(t, yamlText)
	admin := httptest.NewServer(gw.adminHandler())
	defer admin.Close()
	post := func(method, query string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, admin.URL+"/drain"+query, nil)
		resp, err := admin.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct {
		method, query string
		status        int
	}{
		{"GET", "?route=pair", 405},
		{"POST", "", 400},
		{"POST", "?route=pair&upstream=" + u1.URL, 400},
		{"POST", "?route=nope", 404},
		{"POST", "?upstream=ws://127.0.0.1:1", 404},
	} {
		if got, body := post(tt.method, tt.query); got != tt.status {
			t.Errorf("%s /drain%s: %d %q, want %d", tt.method, tt.query, got, body, tt.status)
		}
	}

	// Round robin: clients alternate between the two upstreams.
	var clients []*wstest.Peer
	for range 4 {
		clients = append(clients, wstest.DialRaw(t, gw.Addr, "/"))
	}
	waitFor(t, "4 sessions", func() bool { return gw.Sessions() == 4 })
	if n := sessionsOn(gw, u1.URL); n != 2 {
		t.Fatalf("%d of 4 sessions on %s, want 2", n, u1.URL)
	}
	if code, body := post("POST", "?upstream="+u1.URL); code != 200 || body != "draining 2 sessions\n" {
		t.Fatalf("drain %s: %d %q", u1.URL, code, body)
	}
	// Exactly two clients get Close(1012); the upstream u1 gets 1001 twice.
	got := make(chan string, len(clients))
	for _, c := range clients {
		go func() {
			_ = c.Conn.SetReadDeadline(time.Now().Add(time.Second))
			h, err := frame.ReadHeader(c.BR, frame.Rules{})
			if err != nil {
				got <- "" // not drained: no frame within 1s
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(c.BR, p); err != nil || h.Opcode != frame.OpClose || len(p) < 2 {
				got <- fmt.Sprintf("%v %x %v", h.Opcode, p, err)
				return
			}
			_ = c.WriteErr(frame.AppendFrame(nil, c.Header(true, frame.OpClose), p[:2]))
			got <- fmt.Sprintf("Close(%d, %q)", int(p[0])<<8|int(p[1]), p[2:])
		}()
	}
	closed := 0
	for range clients {
		switch g := <-got; g {
		case "":
		case `Close(1012, "route drained")`:
			closed++
		default:
			t.Errorf("a drained client got %s, want Close(1012, \"route drained\")", g)
		}
	}
	if closed != 2 {
		t.Errorf("%d clients got a Close, want 2", closed)
	}
	u1.expectClose(t, 1001, "route drained")
	u1.expectClose(t, 1001, "route drained")
	waitFor(t, "2 sessions", func() bool { return gw.Sessions() == 2 })
	for _, s := range gw.reg.list() {
		if s.Upstream != u2.URL {
			t.Errorf("a session on %s survived its drain", s.Upstream)
		}
	}
	// New sessions avoid the drained upstream...
	for range 4 {
		clients = append(clients, wstest.DialRaw(t, gw.Addr, "/"))
	}
	waitFor(t, "6 sessions", func() bool { return gw.Sessions() == 6 })
	for _, s := range gw.reg.list() {
		if s.Upstream != u2.URL {
			t.Errorf("a new session went to the drained upstream %s", s.Upstream)
		}
	}
	// ...until the next reload puts it back.
	cfg, err := config.Parse("test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		clients = append(clients, wstest.DialRaw(t, gw.Addr, "/"))
	}
	waitFor(t, "8 sessions", func() bool { return gw.Sessions() == 8 })
	if n1 := sessionsOn(gw, u1.URL); n1 != 1 {
		t.Errorf("%d of 2 sessions after the reload went to %s, want 1 (back in the rotation)", n1, u1.URL)
	}
	// ?route= drains the whole route.
	if code, body := post("POST", "?route=pair"); code != 200 || body != "draining 8 sessions\n" {
		t.Errorf("drain route: %d %q", code, body)
	}
	waitFor(t, "no session", func() bool { return gw.Sessions() == 0 })
	for _, c := range clients {
		c.Conn.Close()
	}
}

// TestDrainEveryUpstream: with every upstream of a route drained, new
// handshakes on it get 503 with Retry-After (the upstreams are out on
// purpose, not failing: not 502), and are logged so; a reload puts them
// back.
func TestDrainEveryUpstream(t *testing.T) {
	t.Parallel()
	up := newGorillaUpstream(t, nil)
	yamlText := fmt.Sprintf("server:\n  shutdown_grace: 3s\n  close_spread: 0s\nroutes:\n  - name: one\n    path: /\n    upstreams: [%q]\n", up.URL)
	gw := startGateway(t, yamlText)
	admin := httptest.NewServer(gw.adminHandler())
	defer admin.Close()
	resp, err := admin.Client().Post(admin.URL+"/drain?upstream="+up.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("drain: %d", resp.StatusCode)
	}
	a := wstest.MustHandshake(t, gw.Addr, "", nil)
	wstest.ExpectStatus(t, a, http.StatusServiceUnavailable, "every upstream drained")
	if ra := a.Resp.Header.Get("Retry-After"); ra == "" {
		t.Errorf("503 without Retry-After")
	}
	waitFor(t, "the rejection to be logged", func() bool {
		return len(gw.Logs.Lines(`"event":"rejected"`, `"route":"one"`, `"status":503`, "drained")) == 1
	})
	cfg, err := config.Parse("test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	b := wstest.MustHandshake(t, gw.Addr, "", nil)
	wstest.ExpectStatus(t, b, http.StatusSwitchingProtocols, "after the reload")
	b.Peer.EchoOnce("back")
}

// sessionsOn counts gw's open sessions on upstream.
func sessionsOn(gw *testGateway, upstream string) int {
	n := 0
	for _, s := range gw.reg.list() {
		if s.Upstream == upstream {
			n++
		}
	}
	return n
}

// TestReloadServerKeyNames: the reload warning names `server:` fields by
// their config keys, every one of them a real key.
func TestReloadServerKeyNames(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeOf(config.ServerConfig{})
	var got []string
	for i := 0; i < typ.NumField(); i++ {
		got = append(got, snakeCase(typ.Field(i).Name))
	}
	if strings.Join(got, " ") != strings.Join(config.ServerKeys(), " ") {
		t.Errorf("ServerConfig fields as keys:\n%v\nthe config's server keys:\n%v", got, config.ServerKeys())
	}
}

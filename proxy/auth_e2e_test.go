package proxy

// Authentication at the edge (README "Authentication"), end to end: tokens
// minted by go-jose (internal/auth/authtest), a different JOSE
// implementation from the gateway's golang-jwt, with keys served by a JWK
// Set endpoint on 127.0.0.1; raw clients; upstreams that record what
// reached them.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/internal/auth/authtest"
	"wsgate/internal/config"
	"wsgate/internal/wstest"
)

const (
	testIss = "https://idp.test/"
	testAud = "wsgate"
)

// authCount is wsgate_auth_total{route,result}, read from /metrics' registry.
func authCount(g *Gateway, route, result string) float64 {
	mfs, _ := g.metrics.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "wsgate_auth_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// jwtRoute is a route with JWT auth against idp (more jwt keys in extra,
// as "key: value" lines), toward up.
func jwtRoute(name, path, up, jwksURL string, extra ...string) string {
	s := fmt.Sprintf("  - name: %s\n    path: %s\n    upstreams: [%s]\n    auth:\n      jwt:\n", name, path, up)
	if jwksURL != "" {
		s += "        jwks_url: " + jwksURL + "\n"
	}
	s += "        issuer: " + testIss + "\n        audience: [" + testAud + "]\n" +
		"        claims_to_headers: {sub: X-User-Id}\n"
	for _, e := range extra {
		s += "        " + e + "\n"
	}
	return s
}

func claims(sub string, ttl time.Duration) authtest.Claims {
	return authtest.Standard(testIss, testAud, sub, ttl)
}

// requestText is everything an upstream received: target and headers.
func requestText(r upReq) string {
	var b strings.Builder
	b.WriteString(r.RequestURI + "\n")
	_ = r.Header.Write(&b)
	return b.String()
}

// TestAuthJWT: valid RS256, ES256, EdDSA (JWK Set) and HS256 (secret file)
// tokens get a 101, and the upstream sees the claims header and no token;
// every bad token is a 401 with the right WWW-Authenticate, and nothing is
// dialled. Counted in wsgate_auth_total, the user in the access log.
func TestAuthJWT(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	up := echoUpstream(t)
	secret := []byte(strings.Repeat("h", 32))
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, e2eHead+"routes:\n"+
		jwtRoute("jwks", "/ws", up.URL, idp.URL, "algorithms: [RS256, ES256, EdDSA]")+
		jwtRoute("hmac", "/hs", up.URL, "", "secret_file: "+secretFile, "algorithms: [HS256]"))

	n := 0
	for _, alg := range authtest.Algorithms {
		tok := idp.Sign(alg, claims("user-"+alg, time.Hour))
		rc := dialWS(t, gw.Addr, upgradeRequest("a.test", "/ws", "Authorization: Bearer "+tok, "X-User-Id: mallory"))
		rc.echoes(t, "hi "+alg)
		rc.Close()
		r := up.Requests()[n]
		n++
		if got := r.Header.Values("X-User-Id"); len(got) != 1 || got[0] != "user-"+alg {
			t.Errorf("%s: upstream X-User-Id %q", alg, got)
		}
		if text := requestText(r); strings.Contains(text, tok[:30]) || r.Header.Get("Authorization") != "" {
			t.Errorf("%s: the token reached the upstream:\n%s", alg, text)
		}
	}
	rc := dialWS(t, gw.Addr, upgradeRequest("a.test", "/hs", "Authorization: Bearer "+authtest.SignHMAC(t, secret, "", claims("hs-user", time.Hour))))
	rc.echoes(t, "hi HS256")
	rc.Close()
	if got := up.Requests()[n].Header.Get("X-User-Id"); got != "hs-user" {
		t.Errorf("HS256: upstream X-User-Id %q", got)
	}
	n++
	if got := authCount(gw.Gateway, "jwks", "ok"); got != 3 {
		t.Errorf("wsgate_auth_total{jwks,ok} = %v, want 3", got)
	}
	eventually(t, "access lines", func() bool { return len(gw.Logs.Lines(`"event":"session"`)) == 4 })
	if l := gw.Logs.Lines(`"user":"user-RS256"`); len(l) != 1 {
		t.Errorf("no access line with the user:\n%s", gw.Logs.String())
	}

	rs := idp.Current("RS256")
	with := func(k string, v any) authtest.Claims { c := claims("u", time.Hour); c[k] = v; return c }
	stranger := authtest.New(t)
	bad := []struct {
		name, path, tok, result string
	}{
		{"expired", "/ws", idp.Sign("ES256", with("exp", time.Now().Add(-time.Hour).Unix())), "expired"},
		{"not yet valid", "/ws", idp.Sign("EdDSA", with("nbf", time.Now().Add(time.Hour).Unix())), "invalid"},
		{"wrong iss", "/ws", idp.Sign("RS256", with("iss", "https://evil.test/")), "invalid"},
		{"wrong aud", "/ws", idp.Sign("RS256", with("aud", "other")), "invalid"},
		{"bad signature", "/ws", authtest.SignWith(t, authtest.Key{Alg: "ES256", KID: idp.Current("ES256").KID, Priv: stranger.Current("ES256").Priv}, claims("u", time.Hour)), "invalid"},
		{"alg none", "/ws", authtest.Unsigned(claims("u", time.Hour)), "invalid"},
		{"RS256 key as HS256 secret", "/ws", authtest.SignHMAC(t, authtest.PublicPEM(t, rs), rs.KID, claims("u", time.Hour)), "invalid"},
		{"RS256 key as HS256 secret, HS256 route", "/hs", authtest.SignHMAC(t, authtest.PublicPEM(t, rs), rs.KID, claims("u", time.Hour)), "invalid"},
		{"unknown kid", "/ws", authtest.SignWith(t, authtest.Key{Alg: "RS256", KID: "who", Priv: stranger.Current("RS256").Priv}, claims("u", time.Hour)), "invalid"},
		{"HS256 with a wrong secret", "/hs", authtest.SignHMAC(t, []byte(strings.Repeat("x", 32)), "", claims("u", time.Hour)), "invalid"},
	}
	for _, b := range bad {
		rc := exchange(t, gw.Addr, upgradeRequest("a.test", b.path, "Authorization: Bearer "+b.tok))
		if rc.resp.StatusCode != http.StatusUnauthorized || rc.resp.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("%s: %s, WWW-Authenticate %q, body %q", b.name, rc.resp.Status, rc.resp.Header.Get("WWW-Authenticate"), rc.body)
		}
	}
	rc = exchange(t, gw.Addr, upgradeRequest("a.test", "/ws"))
	if rc.resp.StatusCode != http.StatusUnauthorized || rc.resp.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("no token: %s, WWW-Authenticate %q", rc.resp.Status, rc.resp.Header.Get("WWW-Authenticate"))
	}
	if c := up.Count(); c != n {
		t.Errorf("the upstream received %d requests, want %d: refused handshakes must not be dialled", c, n)
	}
	if got := authCount(gw.Gateway, "jwks", "expired"); got != 1 {
		t.Errorf("wsgate_auth_total{jwks,expired} = %v", got)
	}
	if got := authCount(gw.Gateway, "jwks", "missing"); got != 1 {
		t.Errorf("wsgate_auth_total{jwks,missing} = %v", got)
	}
	if got := rejections(gw.Gateway, "jwks", "401"); got != 9 {
		t.Errorf("wsgate_handshake_rejected_total{jwks,401} = %v, want 9", got)
	}
}

// TestAuthTokenSources: a token in the query, a cookie, a subprotocol or
// the Authorization header gets a 101 and is removed from what the
// upstream receives; the other offered subprotocols still reach the
// upstream, and its choice reaches the client.
func TestAuthTokenSources(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	pick := func(offers []string) string {
		if len(offers) > 0 {
			return offers[len(offers)-1]
		}
		return ""
	}
	up := newUpstream(t, "up", accept101(&opts101{protocol: pick}))
	gw := startGateway(t, e2eHead+"routes:\n"+jwtRoute("r", "/ws", up.URL, idp.URL,
		`token_from: ["header:Authorization", "query:access_token", "cookie:session", "subprotocol:bearer."]`))
	tok := idp.Sign("ES256", claims("alice", time.Hour))
	cases := []struct {
		name, target         string
		headers              []string
		wantQuery, wantOffer string
		wantCookie, chosen   string
	}{
		{"header", "/ws", []string{"Authorization: Bearer " + tok}, "", "", "", ""},
		{"query", "/ws?room=1&access_token=" + tok, nil, "room=1", "", "", ""},
		{"cookie", "/ws", []string{"Cookie: theme=dark; session=" + tok + "; lang=en"}, "", "", "theme=dark; lang=en", ""},
		{"subprotocol", "/ws", []string{"Sec-WebSocket-Protocol: chat.v1, bearer." + tok + ", chat.v2"}, "", "chat.v1, chat.v2", "", "chat.v2"},
	}
	for i, c := range cases {
		rc := dialWS(t, gw.Addr, upgradeRequest("a.test", c.target, c.headers...))
		if got := rc.resp.Header.Get("Sec-WebSocket-Protocol"); got != c.chosen {
			t.Errorf("%s: client got subprotocol %q, want %q", c.name, got, c.chosen)
		}
		rc.echoes(t, c.name)
		rc.Close()
		r := up.Requests()[i]
		if strings.Contains(requestText(r), tok[:30]) {
			t.Errorf("%s: the token reached the upstream:\n%s", c.name, requestText(r))
		}
		if r.RawQuery != c.wantQuery || r.Header.Get("Cookie") != c.wantCookie ||
			strings.Join(r.Header.Values("Sec-Websocket-Protocol"), ", ") != c.wantOffer || r.Header.Get("X-User-Id") != "alice" {
			t.Errorf("%s: upstream got query %q cookie %q offers %q user %q", c.name, r.RawQuery, r.Header.Get("Cookie"),
				r.Header.Values("Sec-Websocket-Protocol"), r.Header.Get("X-User-Id"))
		}
	}
}

// TestAuthJWKS: a rotated key (new kid) is picked up without a restart;
// with the IdP down and keys cached handshakes still pass; a gateway that
// never fetched its keys answers 503.
func TestAuthJWKS(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	up := echoUpstream(t)
	gw := startGateway(t, e2eHead+"routes:\n"+jwtRoute("r", "/ws", up.URL, idp.URL))
	dial := func(alg string) int {
		rc := exchange(t, gw.Addr, upgradeRequest("a.test", "/ws", "Authorization: Bearer "+idp.Sign(alg, claims("u", time.Hour))))
		rc.Close()
		return rc.resp.StatusCode
	}
	if s := dial("RS256"); s != 101 {
		t.Fatalf("first token: %d", s)
	}
	idp.Rotate("RS256", false)
	if s := dial("RS256"); s != 101 {
		t.Errorf("a token with the rotated key: %d, want 101 without a restart", s)
	}
	idp.SetDown(true)
	idp.Rotate("ES256", true) // an unknown kid makes it fetch, and fail
	for _, alg := range []string{"RS256", "EdDSA"} {
		if s := dial(alg); s != 101 {
			t.Errorf("IdP down, keys cached, %s: %d, want 101", alg, s)
		}
	}
	if s := dial("ES256"); s != 401 {
		t.Errorf("IdP down, unknown kid: %d, want 401", s)
	}

	down := authtest.New(t)
	down.Close()
	gw2 := startGateway(t, e2eHead+"routes:\n"+jwtRoute("r", "/ws", up.URL, down.URL))
	rc := exchange(t, gw2.Addr, upgradeRequest("a.test", "/ws", "Authorization: Bearer "+down.Sign("RS256", claims("u", time.Hour))))
	if rc.resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("keys never fetched: %s %q, want 503", rc.resp.Status, rc.body)
	}
	if got := authCount(gw2.Gateway, "r", "error"); got != 1 {
		t.Errorf("wsgate_auth_total{r,error} = %v", got)
	}
}

// TestAuthOrder: Origin (403) and the handshake rate (429) come before
// auth; auth (401) comes before connections_per_ip (429) and
// max_connections (503).
func TestAuthOrder(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	up := echoUpstream(t)
	gw := startGateway(t, "server:\n  max_connections: 1\n  shutdown_grace: 3s\n  close_spread: 0s\n"+
		"defaults:\n  origins: [\"https://app.test\"]\n  rate_limit: {handshakes: {rate: 1/h, burst: 3}, connections_per_ip: 1}\nroutes:\n"+
		jwtRoute("r", "/ws", up.URL, idp.URL))
	good := "Authorization: Bearer " + idp.Sign("RS256", claims("u", time.Hour))
	status := func(extra ...string) int {
		rc := exchange(t, gw.Addr, upgradeRequest("a.test", "/ws", extra...))
		return rc.resp.StatusCode
	}
	if s := status("Origin: https://evil.test"); s != 403 {
		t.Errorf("bad origin, no token: %d, want 403", s)
	}
	open := dialWS(t, gw.Addr, upgradeRequest("a.test", "/ws", "Origin: https://app.test", good))
	defer open.Close()
	// The one connection this address may have is open, and the gateway
	// is at max_connections: a bad token is still told 401.
	if s := status("Origin: https://app.test", "Authorization: Bearer nope"); s != 401 {
		t.Errorf("bad token at connections_per_ip: %d, want 401", s)
	}
	if s := status("Origin: https://app.test", good); s != 429 {
		t.Errorf("good token over connections_per_ip: %d, want 429", s)
	}
	before := authCount(gw.Gateway, "r", "invalid") + authCount(gw.Gateway, "r", "ok")
	if s := status("Origin: https://app.test", "Authorization: Bearer nope"); s != 429 {
		t.Errorf("over the handshake rate: %d, want 429", s)
	}
	if after := authCount(gw.Gateway, "r", "invalid") + authCount(gw.Gateway, "r", "ok"); after != before {
		t.Error("a handshake over the rate limit was checked for auth")
	}
}

// TestAuthTokenExpiry: a token valid for 3 s gives a session the client
// sees closed with 1008 "token expired" and the upstream with 1001; a
// session whose token is valid for an hour is untouched.
func TestAuthTokenExpiry(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, "auth",
		fmt.Sprintf("{jwt: {jwks_url: %q, issuer: %q, audience: [%s], token_from: [\"query:access_token\"]}}", idp.URL, testIss, testAud)))
	long := wstest.DialRaw(t, gw.Addr, "/?access_token="+idp.Sign("ES256", claims("long", time.Hour)))
	longUp := recvPeer(t, ups)
	t0 := time.Now()
	short := wstest.DialRaw(t, gw.Addr, "/?access_token="+idp.Sign("EdDSA", claims("short", 3*time.Second)))
	shortUp := recvPeer(t, ups)
	for _, p := range []*wstest.Peer{long, longUp, short, shortUp} {
		_ = p.Conn.SetDeadline(time.Now().Add(20 * time.Second))
	}
	short.Send(true, frame.OpText, []byte("before"))
	if f := shortUp.Next(); string(f.Payload) != "before" {
		t.Fatalf("relayed before expiry: %v", f)
	}
	short.ExpectClose(1008, "token expired")
	if el := time.Since(t0); el < 2*time.Second {
		t.Errorf("closed after %v, before the token's exp", el)
	}
	shortUp.ExpectClose(1001, "token expired")
	short.SendClose(1008, "token expired")
	shortUp.SendClose(1001, "token expired")
	m := sessionLog(t, gw, 1)
	if m["user"] != "short" || m["reason"] != "token_expired" || m["client_close_code"] != "1008" || m["upstream_close_code"] != "1001" {
		t.Errorf("access line %v", m)
	}
	// The hour-long session is still there and relays both ways.
	long.Send(true, frame.OpText, []byte("still here"))
	if f := longUp.Next(); f.Opcode != frame.OpText || string(f.Payload) != "still here" {
		t.Fatalf("the 1-hour session after the other expired: %v", f)
	}
	longUp.Send(true, frame.OpText, []byte("yes"))
	if f := long.Next(); f.Opcode != frame.OpText || string(f.Payload) != "yes" {
		t.Fatalf("the 1-hour session after the other expired: %v", f)
	}
	if gw.Sessions() != 1 {
		t.Errorf("%d sessions open, want 1", gw.Sessions())
	}
}

// TestAuthForward: forward auth against a real auth service: allowed with
// copy_headers, 401 with WWW-Authenticate, 302 with Location, timeout ->
// 503; the service sees X-Forwarded-Uri and the client's cookies.
func TestAuthForward(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []http.Header
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		c, _ := r.Cookie("sid")
		switch {
		case c != nil && c.Value == "good":
			w.Header().Set("X-User-Id", "bob")
			w.WriteHeader(http.StatusOK)
		case c != nil && c.Value == "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case c != nil && c.Value == "expired":
			http.Redirect(w, r, "https://login.test/?back=%2Fws", http.StatusFound)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="app"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("who are you?"))
		}
	}))
	t.Cleanup(svc.Close)
	up := echoUpstream(t)
	gw := startGateway(t, e2eHead+fmt.Sprintf(`routes:
  - name: fwd
    path: /ws
    upstreams: [%s]
    auth:
      forward: {url: "%s/check", timeout: 500ms, copy_headers: [X-User-Id]}
`, up.URL, svc.URL))

	rc := dialWS(t, gw.Addr, upgradeRequest("app.test", "/ws/room?x=1", "Cookie: sid=good; theme=dark", "X-User-Id: mallory"))
	rc.echoes(t, "hi")
	rc.Close()
	r := up.only(t)
	if got := r.Header.Values("X-User-Id"); len(got) != 1 || got[0] != "bob" {
		t.Errorf("upstream X-User-Id %q, want [bob]", got)
	}
	mu.Lock()
	h := seen[0]
	mu.Unlock()
	if h.Get("X-Forwarded-Uri") != "/ws/room?x=1" || h.Get("X-Forwarded-Method") != "GET" || h.Get("Cookie") != "sid=good; theme=dark" ||
		h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Host") != "app.test" || h.Get("X-Forwarded-Proto") != "http" ||
		h.Get("Sec-Websocket-Key") != "" || h.Get("Upgrade") != "" {
		t.Errorf("the auth service got %v", h)
	}
	eventually(t, "the access line", func() bool { return len(gw.Logs.Lines(`"user":"bob"`)) == 1 })

	rc = exchange(t, gw.Addr, upgradeRequest("app.test", "/ws", "Cookie: sid=bad"))
	if rc.resp.StatusCode != 401 || rc.resp.Header.Get("WWW-Authenticate") != `Bearer realm="app"` || string(rc.body) != "who are you?" {
		t.Errorf("deny: %s %q %q", rc.resp.Status, rc.resp.Header.Get("WWW-Authenticate"), rc.body)
	}
	rc = exchange(t, gw.Addr, upgradeRequest("app.test", "/ws", "Cookie: sid=expired"))
	if rc.resp.StatusCode != 302 || rc.resp.Header.Get("Location") != "https://login.test/?back=%2Fws" {
		t.Errorf("redirect: %s %q", rc.resp.Status, rc.resp.Header.Get("Location"))
	}
	rc = exchange(t, gw.Addr, upgradeRequest("app.test", "/ws", "Cookie: sid=slow"))
	if rc.resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("timeout: %s, want 503", rc.resp.Status)
	}
	if c := up.Count(); c != 1 {
		t.Errorf("the upstream received %d requests, want 1", c)
	}
	for result, want := range map[string]float64{"ok": 1, "denied": 2, "error": 1} {
		if got := authCount(gw.Gateway, "fwd", result); got != want {
			t.Errorf("wsgate_auth_total{fwd,%s} = %v, want %v", result, got, want)
		}
	}
}

// TestAuthReload: a reload that turns auth on applies to new handshakes
// only (an open session goes on untouched); the keys fetched before the
// reload are kept, so a reload while the IdP is down still admits tokens.
func TestAuthReload(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	up := echoUpstream(t)
	route := jwtRoute("r", "/ws", up.URL, idp.URL)
	gw := startGateway(t, e2eHead+"routes:\n  - {name: r, path: /ws, upstreams: ["+up.URL+"]}\n")
	open := dialWS(t, gw.Addr, upgradeRequest("a.test", "/ws"))
	reload := func(yml string) {
		t.Helper()
		cfg, err := config.Parse("test.yaml", []byte(yml))
		if err != nil {
			t.Fatal(err)
		}
		if err := gw.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	reload(e2eHead + "routes:\n" + route)
	if rc := exchange(t, gw.Addr, upgradeRequest("a.test", "/ws")); rc.resp.StatusCode != 401 {
		t.Errorf("after the reload, no token: %s, want 401", rc.resp.Status)
	}
	good := "Authorization: Bearer " + idp.Sign("ES256", claims("u", time.Hour))
	dialWS(t, gw.Addr, upgradeRequest("a.test", "/ws", good)).Close()
	open.echoes(t, "the session from before the reload")

	idp.SetDown(true)
	reload(e2eHead + "routes:\n" + route + "    idle_timeout: 2m\n")
	dialWS(t, gw.Addr, upgradeRequest("a.test", "/ws", good)).Close()
	reload(e2eHead + "routes:\n  - {name: r, path: /ws, upstreams: [" + up.URL + "], auth: off}\n")
	dialWS(t, gw.Addr, upgradeRequest("a.test", "/ws")).Close()
}

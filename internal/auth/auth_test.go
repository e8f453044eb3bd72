package auth

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wsgate/internal/auth/authtest"
	"wsgate/internal/config"
)

const (
	iss = "https://idp.test/"
	aud = "wsgate"
)

// loadAuth loads an auth block as the config loader does (so that
// defaults and key files are what the gateway gets) and builds it.
func loadAuth(t *testing.T, reg *Registry, block string) *Auth {
	t.Helper()
	yml := "defaults:\n  auth:\n" + indent(block, "    ") + "routes:\n  - name: r\n    upstreams: [builtin:echo]\n"
	cfg, err := config.Parse("auth.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", yml, err)
	}
	return New(cfg.Routes[0].Settings.Auth, reg)
}

func indent(s, by string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(strings.Trim(s, "\n"), "\n") {
		b.WriteString(by + line + "\n")
	}
	return b.String()
}

func newReg() *Registry { return NewRegistry(zerolog.Nop()) }

func upgrade(target string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	return r
}

func bearer(tok string) *http.Request {
	r := upgrade("/ws")
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

func check(a *Auth, r *http.Request) Result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return a.Check(ctx, r, "192.0.2.7", "https")
}

func jwksBlock(url string, extra string) string {
	return "jwt:\n  jwks_url: " + url + "\n  issuer: " + iss + "\n  audience: [" + aud + "]\n" +
		"  claims_to_headers: {sub: X-User-Id, role: X-Role}\n" + extra
}

// TestJWTValid: tokens minted by go-jose with RS256, ES256 and EdDSA keys
// from a JWK Set, and HS256 with a secret file, are accepted; the result
// names the user, the expiry and the claims headers.
func TestJWTValid(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	a := loadAuth(t, newReg(), jwksBlock(idp.URL, ""))
	for _, alg := range authtest.Algorithms {
		t.Run(alg, func(t *testing.T) {
			c := authtest.Standard(iss, aud, "user-"+alg, time.Hour)
			c["role"] = []any{"admin", "ops"}
			res := check(a, bearer(idp.Sign(alg, c)))
			if !res.Allow || res.Outcome != OutcomeOK {
				t.Fatalf("%s token refused: %d %s %s", alg, res.Status, res.Outcome, res.Reason)
			}
			if res.User != "user-"+alg || res.Set.Get("X-User-Id") != "user-"+alg || res.Set.Get("X-Role") != "admin, ops" {
				t.Errorf("user %q, headers %v", res.User, res.Set)
			}
			if want := time.Unix(c["exp"].(int64), 0); !res.Expires.Equal(want) {
				t.Errorf("expires %v, want %v", res.Expires, want)
			}
		})
	}
	t.Run("HS256", func(t *testing.T) {
		secret := []byte(strings.Repeat("k", 32))
		file := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(file, append(secret, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		a := loadAuth(t, newReg(), "jwt:\n  secret_file: "+file+"\n  audience: "+aud+"\n  expiry: ignore\n")
		res := check(a, bearer(authtest.SignHMAC(t, secret, "", authtest.Standard(iss, aud, "h", time.Hour))))
		if !res.Allow || res.User != "h" || !res.Expires.IsZero() {
			t.Fatalf("HS256: %+v", res)
		}
	})
}

// TestJWTRefused: every kind of bad token is a 401 with the RFC 6750
// challenge README "Authentication" names, and the right metric outcome.
func TestJWTRefused(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	secret := []byte(strings.Repeat("s", 32))
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	reg := newReg()
	rsOnly := loadAuth(t, reg, jwksBlock(idp.URL, "  algorithms: [RS256, ES256, EdDSA]\n  leeway: 5s\n"))
	// HS256 allowed too, with a secret of its own: a token "signed" with
	// the RSA public key must still fail.
	mixed := loadAuth(t, reg, jwksBlock(idp.URL, "  secret_file: "+file+"\n  algorithms: [RS256, HS256]\n"))

	rs := idp.Current("RS256")
	ok := func() authtest.Claims { return authtest.Standard(iss, aud, "u", time.Hour) }
	with := func(k string, v any) authtest.Claims { c := ok(); c[k] = v; return c }
	badSig := func() string {
		tok := idp.Sign("RS256", ok())
		i := strings.LastIndexByte(tok, '.')
		sig := []byte(tok[i+1:])
		sig[10] ^= 'A' ^ 'B'
		if sig[10] == tok[i+1+10] {
			sig[10] = 'x'
		}
		return tok[:i+1] + string(sig)
	}
	otherIdP := authtest.New(t)
	stranger := otherIdP.Current("ES256")
	stranger.KID = idp.Current("ES256").KID // a known kid, the wrong key

	cases := []struct {
		name    string
		a       *Auth
		tok     string
		outcome string
	}{
		{"expired", rsOnly, idp.Sign("ES256", with("exp", time.Now().Add(-time.Minute).Unix())), OutcomeExpired},
		{"not yet valid", rsOnly, idp.Sign("EdDSA", with("nbf", time.Now().Add(time.Minute).Unix())), OutcomeInvalid},
		{"wrong issuer", rsOnly, idp.Sign("RS256", with("iss", "https://evil.test/")), OutcomeInvalid},
		{"wrong audience", rsOnly, idp.Sign("RS256", with("aud", "someone-else")), OutcomeInvalid},
		{"no audience", rsOnly, idp.Sign("RS256", with("aud", nil)), OutcomeInvalid},
		{"bad signature", rsOnly, badSig(), OutcomeInvalid},
		{"signed by another key with a known kid", rsOnly, authtest.SignWith(t, stranger, ok()), OutcomeInvalid},
		{"alg none", rsOnly, authtest.Unsigned(ok()), OutcomeInvalid},
		{"alg none, HS256 allowed", mixed, authtest.Unsigned(ok()), OutcomeInvalid},
		{"HS256 with the RSA public key, not allowed", rsOnly, authtest.SignHMAC(t, authtest.PublicPEM(t, rs), rs.KID, ok()), OutcomeInvalid},
		{"HS256 with the RSA public key, HS256 allowed", mixed, authtest.SignHMAC(t, authtest.PublicPEM(t, rs), rs.KID, ok()), OutcomeInvalid},
		{"unknown kid", rsOnly, authtest.SignWith(t, authtest.Key{Alg: "RS256", KID: "nobody", Priv: otherIdP.Current("RS256").Priv}, ok()), OutcomeInvalid},
		{"malformed", rsOnly, "not.a.jwt", OutcomeInvalid},
		{"garbage", rsOnly, "%%%", OutcomeInvalid},
	}
	for _, c := range cases {
		res := check(c.a, bearer(c.tok))
		if res.Allow || res.Status != http.StatusUnauthorized || res.Outcome != c.outcome ||
			res.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("%s: allow=%v %d %s %q (%s)", c.name, res.Allow, res.Status, res.Outcome, res.Header.Get("WWW-Authenticate"), res.Reason)
		}
		if strings.Contains(res.Reason, c.tok) {
			t.Errorf("%s: the reason quotes the token", c.name)
		}
	}
	// The secret itself still works on the mixed route: the rejections
	// above are not a broken HS256 path.
	if res := check(mixed, bearer(authtest.SignHMAC(t, secret, "", ok()))); !res.Allow {
		t.Errorf("HS256 with the configured secret: %s", res.Reason)
	}
	// Within leeway: accepted.
	if res := check(rsOnly, bearer(idp.Sign("RS256", with("exp", time.Now().Add(-2*time.Second).Unix())))); !res.Allow {
		t.Errorf("expired 2 s ago with leeway 5s: %s", res.Reason)
	}
	for name, r := range map[string]*http.Request{"none": upgrade("/ws"), "basic": func() *http.Request {
		r := upgrade("/ws")
		r.SetBasicAuth("u", "p")
		return r
	}(), "empty bearer": bearer("")} {
		res := check(rsOnly, r)
		if res.Allow || res.Status != 401 || res.Outcome != OutcomeMissing || res.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("%s: %+v", name, res)
		}
	}
}

// TestJWKSRotation: a new kid is fetched at once, at most once per
// UnknownKIDEvery; a background refresh picks up keys when the set is
// stale; keys a refresh no longer finds are gone.
func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	reg := newReg()
	a := loadAuth(t, reg, jwksBlock(idp.URL, ""))
	claims := authtest.Standard(iss, aud, "u", time.Hour)
	if res := check(a, bearer(idp.Sign("ES256", claims))); !res.Allow {
		t.Fatalf("first token: %s", res.Reason)
	}
	before := idp.Fetches.Load()
	old := idp.Current("ES256")
	idp.Rotate("ES256", false)
	if res := check(a, bearer(idp.Sign("ES256", claims))); !res.Allow {
		t.Fatalf("rotated key (new kid) not picked up: %s", res.Reason)
	}
	if n := idp.Fetches.Load() - before; n != 1 {
		t.Errorf("the unknown kid made %d fetches, want 1", n)
	}
	if res := check(a, bearer(authtest.SignWith(t, old, claims))); res.Allow {
		t.Error("a key the JWK Set dropped still verifies")
	}
	// Unknown kids within UnknownKIDEvery: refused at once, no fetch.
	idp.Rotate("ES256", false)
	before = idp.Fetches.Load()
	for range 5 {
		if res := check(a, bearer(idp.Sign("ES256", claims))); res.Allow || res.Status != 401 {
			t.Fatalf("a second new kid within UnknownKIDEvery: %+v", res)
		}
	}
	if n := idp.Fetches.Load() - before; n != 0 {
		t.Errorf("unknown kids within UnknownKIDEvery made %d fetches, want 0", n)
	}

	// Background refresh: a stale set is fetched again without anyone
	// waiting, and the new kid is accepted once it is in.
	reg2 := newReg()
	reg2.RefreshEvery, reg2.UnknownKIDEvery = 50*time.Millisecond, time.Hour
	b := loadAuth(t, reg2, jwksBlock(idp.URL, ""))
	if res := check(b, bearer(idp.Sign("RS256", claims))); !res.Allow {
		t.Fatalf("first token: %s", res.Reason)
	}
	// Spend the unknown-kid fetch on a kid nobody has.
	stranger := authtest.Key{Alg: "RS256", KID: "nobody", Priv: idp.Current("RS256").Priv}
	if res := check(b, bearer(authtest.SignWith(t, stranger, claims))); res.Allow {
		t.Fatal("unknown kid accepted")
	}
	reg2.UnknownKIDEvery = 50 * time.Millisecond // background retries
	idp.Rotate("RS256", false)
	tok := idp.Sign("RS256", claims)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The fetch for an unknown kid is spent for an hour; only the
		// background refresh can bring the new key.
		k := reg2.set(idp.URL)
		k.mu.Lock()
		k.unknownAt = time.Now()
		k.mu.Unlock()
		if check(b, bearer(tok)).Allow {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background refresh never picked up the rotated key")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJWKSDown: with keys cached, an IdP that is down changes nothing;
// with none ever fetched, checks get 503 until it is back.
func TestJWKSDown(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	claims := authtest.Standard(iss, aud, "u", time.Hour)
	reg := newReg()
	reg.RefreshEvery, reg.UnknownKIDEvery = time.Millisecond, time.Millisecond
	a := loadAuth(t, reg, jwksBlock(idp.URL, ""))
	if res := check(a, bearer(idp.Sign("EdDSA", claims))); !res.Allow {
		t.Fatalf("first token: %s", res.Reason)
	}
	idp.SetDown(true)
	before := idp.Fetches.Load()
	for i := 0; i < 20 || idp.Fetches.Load() == before; i++ {
		if res := check(a, bearer(idp.Sign("EdDSA", claims))); !res.Allow {
			t.Fatalf("IdP down with keys cached: %d %s", res.Status, res.Reason)
		}
		time.Sleep(2 * time.Millisecond)
	}

	down := authtest.New(t)
	down.SetDown(true)
	reg2 := newReg()
	reg2.RetryEvery = 10 * time.Millisecond
	b := loadAuth(t, reg2, jwksBlock(down.URL, ""))
	res := check(b, bearer(down.Sign("RS256", claims)))
	if res.Allow || res.Status != http.StatusServiceUnavailable || res.Outcome != OutcomeError {
		t.Fatalf("never fetched: %+v", res)
	}
	down.SetDown(false)
	deadline := time.Now().Add(10 * time.Second)
	for !check(b, bearer(down.Sign("RS256", claims))).Allow {
		if time.Now().After(deadline) {
			t.Fatal("keys never fetched after the IdP came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTokenSources: each source works, in order; Apply removes the
// credential (every configured source present) and client-sent copies of
// the claims headers, and keeps everything else; Offer drops the token
// subprotocol only.
func TestTokenSources(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	sources := "  token_from: [\"header:Authorization\", \"query:access_token\", \"cookie:session\", \"subprotocol:bearer.\", \"header:X-Token\"]\n"
	a := loadAuth(t, newReg(), jwksBlock(idp.URL, sources))
	tok := idp.Sign("ES256", authtest.Standard(iss, aud, "alice", time.Hour))

	type want struct {
		rawQuery, cookie, protocol, authz string
		offer                             []string
	}
	cases := []struct {
		name string
		req  func() *http.Request
		want want
	}{
		{"header", func() *http.Request { return bearer(tok) }, want{}},
		{"query", func() *http.Request { return upgrade("/ws?a=1&access_token=" + tok + "&b=%20x") },
			want{rawQuery: "a=1&b=%20x"}},
		{"cookie", func() *http.Request {
			r := upgrade("/ws")
			r.Header.Add("Cookie", "theme=dark; session="+tok+"; lang=en")
			return r
		}, want{cookie: "theme=dark; lang=en"}},
		{"subprotocol", func() *http.Request {
			r := upgrade("/ws")
			r.Header.Set("Sec-WebSocket-Protocol", "chat.v2, bearer."+tok+", chat.v1")
			return r
		}, want{protocol: "chat.v2, chat.v1", offer: []string{"chat.v2", "chat.v1"}}},
		{"subprotocol base64url", func() *http.Request {
			r := upgrade("/ws")
			r.Header.Set("Sec-WebSocket-Protocol", "bearer."+b64(tok))
			return r
		}, want{}},
		{"custom header", func() *http.Request {
			r := upgrade("/ws")
			r.Header.Set("X-Token", tok)
			return r
		}, want{}},
		{"basic auth stays, cookie used", func() *http.Request {
			r := upgrade("/ws")
			r.SetBasicAuth("u", "p")
			r.AddCookie(&http.Cookie{Name: "session", Value: tok})
			return r
		}, want{authz: "Basic dTpw"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.req()
			r.Header.Set("X-User-Id", "mallory") // a client's own copy
			r.Header.Set("X-Other", "kept")
			res := check(a, r)
			if !res.Allow || res.User != "alice" {
				t.Fatalf("refused: %d %s", res.Status, res.Reason)
			}
			offer := res.Offer(offers(r.Header))
			res.Apply(r)
			if r.URL.RawQuery != c.want.rawQuery || r.Header.Get("Cookie") != c.want.cookie ||
				r.Header.Get("Sec-WebSocket-Protocol") != c.want.protocol || r.Header.Get("Authorization") != c.want.authz ||
				r.Header.Get("X-Token") != "" {
				t.Errorf("after Apply: query %q cookie %q protocol %q authorization %q x-token %q",
					r.URL.RawQuery, r.Header.Get("Cookie"), r.Header.Get("Sec-WebSocket-Protocol"), r.Header.Get("Authorization"), r.Header.Get("X-Token"))
			}
			if strings.Contains(r.URL.String()+headerText(r.Header), tok[:40]) {
				t.Error("the token is still in the request")
			}
			if got := r.Header.Values("X-User-Id"); len(got) != 1 || got[0] != "alice" || r.Header.Get("X-Other") != "kept" {
				t.Errorf("X-User-Id %q, X-Other %q", got, r.Header.Get("X-Other"))
			}
			if strings.Join(offer, ",") != strings.Join(c.want.offer, ",") {
				t.Errorf("offer %q, want %q", offer, c.want.offer)
			}
		})
	}

	// forward_token keeps the credential (but never offers the token
	// subprotocol upstream).
	keep := loadAuth(t, newReg(), jwksBlock(idp.URL, sources+"  forward_token: true\n"))
	r := upgrade("/ws?access_token=" + tok)
	r.AddCookie(&http.Cookie{Name: "session", Value: tok})
	r.Header.Set("Sec-WebSocket-Protocol", "bearer."+tok+", chat")
	res := check(keep, r)
	if !res.Allow {
		t.Fatal(res.Reason)
	}
	res.Apply(r)
	if !strings.Contains(r.URL.RawQuery, tok) || !strings.Contains(r.Header.Get("Cookie"), tok) || r.Header.Get("Sec-WebSocket-Protocol") != "chat" {
		t.Errorf("forward_token: query %q cookie %q protocol %q", r.URL.RawQuery, r.Header.Get("Cookie"), r.Header.Get("Sec-WebSocket-Protocol"))
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func headerText(h http.Header) string {
	var b strings.Builder
	_ = h.Write(&b)
	return b.String()
}

func TestClaimValue(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   any
		want string
		ok   bool
	}{
		{"x", "x", true}, {float64(42), "42", true}, {1.5, "1.5", true}, {true, "true", true},
		{[]any{"a", "b"}, "a, b", true}, {[]any{"a", 1.0}, `["a",1]`, true},
		{map[string]any{"k": "v"}, `{"k":"v"}`, true}, {nil, "", false}, {"a\r\nX-Evil: 1", "", false},
	} {
		got, ok := claimValue(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("claimValue(%#v) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// BenchmarkCheck is the cost of one handshake's JWT check (keys cached),
// per algorithm.
func BenchmarkCheck(b *testing.B) {
	idp := authtest.New(b)
	reg := newReg()
	yml := "defaults:\n  auth:\n" + indent(jwksBlock(idp.URL, ""), "    ") + "routes:\n  - name: r\n    upstreams: [builtin:echo]\n"
	cfg, err := config.Parse("auth.yaml", []byte(yml))
	if err != nil {
		b.Fatal(err)
	}
	a := New(cfg.Routes[0].Settings.Auth, reg)
	for _, alg := range authtest.Algorithms {
		b.Run(alg, func(b *testing.B) {
			r := bearer(idp.Sign(alg, authtest.Standard(iss, aud, "u", time.Hour)))
			if res := check(a, r); !res.Allow {
				b.Fatal(res.Reason)
			}
			b.ReportAllocs()
			for b.Loop() {
				if res := a.Check(context.Background(), r, "192.0.2.7", "https"); !res.Allow {
					b.Fatal(res.Reason)
				}
			}
		})
	}
}

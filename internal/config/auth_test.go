package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestConfigAuth: a valid auth setup loads with what it says; a route's
// auth replaces the defaults' block as a whole, and "off" turns it off.
func TestConfigAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	writeKey := func(name string, k any) string {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ecFile, edFile := writeKey("ec.pem", &ec.PublicKey), writeKey("ed.pem", edPub)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := `
defaults:
  auth:
    jwt:
      jwks_url: http://127.0.0.1:9999/jwks.json
      keys: [` + ecFile + `, ` + edFile + `]
      algorithms: [ES256, EdDSA]
      issuer: https://idp.example.com/
      audience: wsgate
      leeway: 30s
      token_from: ["header:authorization", "query:access_token", "cookie:session", "subprotocol:bearer."]
      claims_to_headers: {sub: x-user-id}
routes:
  - name: inherits
    path: /a
    upstreams: [builtin:echo]
  - name: hmac
    path: /b
    upstreams: [builtin:echo]
    auth:
      jwt: {secret_file: ` + secret + `, expiry: ignore, forward_token: true}
  - name: forward
    path: /c
    upstreams: [builtin:echo]
    auth:
      forward: {url: "http://auth.internal:8000/check", copy_headers: [x-user-id]}
  - name: public
    path: /d
    upstreams: [builtin:echo]
    auth: off
`
	cfg, err := Parse("auth.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	j := cfg.RouteByName("inherits").Settings.Auth.JWT
	want := &JWTAuth{
		JWKSURL: "http://127.0.0.1:9999/jwks.json", KeyFiles: []string{ecFile, edFile},
		Keys: j.Keys, Algorithms: []string{"ES256", "EdDSA"}, Issuer: "https://idp.example.com/",
		Audience: []string{"wsgate"}, Leeway: 30 * time.Second,
		TokenFrom: []TokenSource{{FromHeader, "Authorization"}, {FromQuery, "access_token"},
			{FromCookie, "session"}, {FromSubprotocol, "bearer."}},
		ClaimsToHeaders: map[string]string{"sub": "X-User-Id"}, Expiry: ExpiryClose,
	}
	if !reflect.DeepEqual(j, want) {
		t.Errorf("jwt = %+v\nwant %+v", j, want)
	}
	if _, ok := j.Keys[0].(*ecdsa.PublicKey); !ok {
		t.Errorf("keys[0] is %T", j.Keys[0])
	}
	if _, ok := j.Keys[1].(ed25519.PublicKey); !ok {
		t.Errorf("keys[1] is %T", j.Keys[1])
	}
	h := cfg.RouteByName("hmac").Settings.Auth.JWT
	if string(h.Secret) != strings.Repeat("s", 40) || h.Expiry != ExpiryIgnore || !h.ForwardToken ||
		h.Issuer != "" || !reflect.DeepEqual(h.Algorithms, []string{"HS256", "HS384", "HS512"}) ||
		!reflect.DeepEqual(h.TokenFrom, []TokenSource{{FromHeader, "Authorization"}}) {
		t.Errorf("hmac route's jwt (replaces defaults as a whole) = %+v", h)
	}
	f := cfg.RouteByName("forward").Settings.Auth
	if f.JWT != nil || f.Forward.URL.String() != "http://auth.internal:8000/check" ||
		f.Forward.Timeout != 2*time.Second || !reflect.DeepEqual(f.Forward.CopyHeaders, []string{"X-User-Id"}) {
		t.Errorf("forward = %+v", f)
	}
	if a := cfg.RouteByName("public").Settings.Auth; a != nil {
		t.Errorf("auth: off left %+v", a)
	}
}

func TestParseTokenSource(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]TokenSource{
		"header:authorization": {FromHeader, "Authorization"},
		"header:X-Token":       {FromHeader, "X-Token"},
		"query:access_token":   {FromQuery, "access_token"},
		"cookie:__Host-sess":   {FromCookie, "__Host-sess"},
		"subprotocol:base64url.bearer.authorization.k8s.io.": {FromSubprotocol, "base64url.bearer.authorization.k8s.io."},
	} {
		got, err := ParseTokenSource(in)
		if err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "header", "header:", "header:Cookie", "header:Sec-WebSocket-Protocol",
		"header:a b", "query:a&b", "query:a=b", "cookie:a;b", "subprotocol:a,b", "body:x", ":x"} {
		if got, err := ParseTokenSource(in); err == nil {
			t.Errorf("%q: accepted as %v", in, got)
		}
	}
}

// FuzzParseTokenSource: never panics; what it accepts prints back as an
// equivalent source.
func FuzzParseTokenSource(f *testing.F) {
	for _, s := range []string{"header:Authorization", "query:access_token", "cookie:session",
		"subprotocol:bearer.", "header:", "x:y:z", "cookie:\x00", "query:%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := ParseTokenSource(s)
		if err != nil {
			return
		}
		again, err := ParseTokenSource(src.String())
		if err != nil || again != src {
			t.Fatalf("%q -> %v -> %v, %v", s, src, again, err)
		}
		if src.Name == "" {
			t.Fatalf("%q: empty name", s)
		}
	})
}

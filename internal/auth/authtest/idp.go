// Package authtest is a test identity provider: it mints JWTs with
// github.com/go-jose/go-jose/v4 — a different JOSE implementation from the
// gateway's verifier (golang-jwt), so that the two check each other — and
// serves its public keys as a JWK Set on 127.0.0.1, with key rotation and
// an outage switch. For tests only.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// Algorithms the IdP signs with: one per key type.
var Algorithms = []string{"RS256", "ES256", "EdDSA"}

// Key is a signing key and its kid.
type Key struct {
	Alg  string
	KID  string
	Priv crypto.Signer
}

// IdP is a JWK Set endpoint and a token minter.
type IdP struct {
	t       testing.TB
	srv     *httptest.Server
	URL     string // the JWK Set's URL
	Fetches atomic.Int64
	mu      sync.Mutex
	keys    map[string]Key // by alg: the current key
	old     []Key          // rotated-out keys still published (until Forget)
	down    bool
	gen     int
}

// New starts an IdP with one fresh key per algorithm.
func New(t testing.TB) *IdP {
	p := &IdP{t: t, keys: map[string]Key{}}
	for _, alg := range Algorithms {
		p.keys[alg] = p.newKey(alg)
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	p.URL = p.srv.URL + "/.well-known/jwks.json"
	return p
}

func (p *IdP) newKey(alg string) Key {
	p.gen++
	k := Key{Alg: alg, KID: alg + "-" + strconv.Itoa(p.gen)}
	var err error
	switch alg {
	case "RS256":
		k.Priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		k.Priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, k.Priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	return k
}

func (p *IdP) serve(w http.ResponseWriter, r *http.Request) {
	p.Fetches.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		http.Error(w, "IdP down", http.StatusServiceUnavailable)
		return
	}
	var set jose.JSONWebKeySet
	for _, alg := range Algorithms {
		k := p.keys[alg]
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Priv.Public(), KeyID: k.KID, Algorithm: alg, Use: "sig"})
	}
	for _, k := range p.old {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Priv.Public(), KeyID: k.KID, Algorithm: k.Alg, Use: "sig"})
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_ = json.NewEncoder(w).Encode(set)
}

// Current is the key alg signs with now.
func (p *IdP) Current(alg string) Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[alg]
}

// Rotate gives alg a new key (a new kid). With keepOld the old key stays
// published; without it, it disappears from the set.
func (p *IdP) Rotate(alg string, keepOld bool) Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	if keepOld {
		p.old = append(p.old, p.keys[alg])
	}
	p.keys[alg] = p.newKey(alg)
	return p.keys[alg]
}

// SetDown makes the JWK Set answer 503 (true) or serve again (false).
func (p *IdP) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// Close stops the endpoint: connections are refused from then on.
func (p *IdP) Close() { p.srv.Close() }

// Claims are a token's claims; Times are Unix seconds.
type Claims map[string]any

// Standard returns claims for sub with iss, aud, and exp ttl from now.
func Standard(iss, aud, sub string, ttl time.Duration) Claims {
	now := time.Now()
	return Claims{"iss": iss, "aud": aud, "sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
}

// Sign mints a token with alg's current key.
func (p *IdP) Sign(alg string, c Claims) string {
	return SignWith(p.t, p.Current(alg), c)
}

// SignWith mints a token with k (its kid in the header).
func SignWith(t testing.TB, k Key, c Claims) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Alg),
		Key: jose.JSONWebKey{Key: k.Priv, KeyID: k.KID}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(s).Claims(map[string]any(c)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// SignHMAC mints an HS256 token with secret, kid in the header if not "".
func SignHMAC(t testing.TB, secret []byte, kid string, c Claims) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(s).Claims(map[string]any(c)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Unsigned is c as an "alg": "none" token (RFC 7519 §6), which no
// verifier may accept.
func Unsigned(c Claims) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(b) + "."
}

// PublicPEM is k's public key as a PEM "PUBLIC KEY" block: what an
// algorithm-confusion attacker signs HS256 tokens with.
func PublicPEM(t testing.TB, k Key) []byte {
	der, err := x509.MarshalPKIXPublicKey(k.Priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

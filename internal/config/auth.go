package config

// The `auth:` setting (README "Authentication"): a JWT check or a forward
// subrequest to an auth service, under defaults: or in a route.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"wsgate/internal/config/yamlwalk"

	"gopkg.in/yaml.v3"
)

// Auth is a route's `auth` block: JWT, Forward or both (a request must
// then pass both: the token first, then the auth service). A nil *Auth in
// RouteSettings means no authentication.
type Auth struct {
	JWT     *JWTAuth
	Forward *ForwardAuth
}

// JWTAuth is `auth.jwt`. Keys and Secret were read and parsed when the
// config was loaded.
type JWTAuth struct {
	JWKSURL    string             // "" = none; https, or http to a loopback host
	KeyFiles   []string           // PEM files, as written
	Keys       []crypto.PublicKey // parsed from KeyFiles: *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
	SecretFile string
	Secret     []byte   // HMAC secret (one trailing newline removed); nil = none
	Algorithms []string // allowed "alg" values; never "none"
	Issuer     string   // "" = not checked
	Audience   []string // the token's aud must contain one of them; empty = not checked
	Leeway     time.Duration
	TokenFrom  []TokenSource // in order; the first present is used
	// ForwardToken keeps the credential in the request sent upstream.
	ForwardToken bool
	// ClaimsToHeaders maps a claim name to the (canonical) header it is
	// sent upstream in.
	ClaimsToHeaders map[string]string
	Expiry          Expiry
}

// ForwardAuth is `auth.forward`.
type ForwardAuth struct {
	URL         *url.URL
	Timeout     time.Duration
	CopyHeaders []string // canonical header names
}

// Expiry is `auth.jwt.expiry`.
type Expiry string

const (
	ExpiryClose  Expiry = "close"  // the session ends at the token's exp
	ExpiryIgnore Expiry = "ignore" // exp is checked at the handshake only
)

// TokenSource is one entry of `token_from`: where a token is looked for.
type TokenSource struct {
	Kind TokenKind
	// Name is the header, query parameter or cookie name (a header name is
	// canonical), or the subprotocol prefix.
	Name string
}

// TokenKind is the part of a token_from entry before the colon.
type TokenKind string

const (
	FromHeader      TokenKind = "header"
	FromQuery       TokenKind = "query"
	FromCookie      TokenKind = "cookie"
	FromSubprotocol TokenKind = "subprotocol"
)

func (s TokenSource) String() string { return string(s.Kind) + ":" + s.Name }

// ParseTokenSource parses a token_from entry: "header:Authorization",
// "query:access_token", "cookie:session" or "subprotocol:bearer.".
func ParseTokenSource(s string) (TokenSource, error) {
	kind, name, ok := strings.Cut(s, ":")
	if !ok {
		return TokenSource{}, fmt.Errorf("token source %q: want kind:name, e.g. header:Authorization, query:access_token, cookie:session or subprotocol:bearer.", yamlwalk.Clip(s))
	}
	if name == "" {
		return TokenSource{}, fmt.Errorf("token source %q: the name after %q is empty", yamlwalk.Clip(s), kind+":")
	}
	switch TokenKind(kind) {
	case FromHeader:
		if !isToken(name) {
			return TokenSource{}, fmt.Errorf("token source %q: %q is not a valid header name", yamlwalk.Clip(s), yamlwalk.Clip(name))
		}
		c := http.CanonicalHeaderKey(name)
		if hopByHopAuth[c] || strings.HasPrefix(c, "Sec-Websocket-") || c == "Cookie" {
			return TokenSource{}, fmt.Errorf("token source %q: %s cannot carry a token (use cookie:NAME for a cookie, subprotocol:PREFIX for a subprotocol)", yamlwalk.Clip(s), c)
		}
		return TokenSource{FromHeader, c}, nil
	case FromQuery:
		for _, c := range []byte(name) {
			if c <= ' ' || c >= 0x7f || strings.IndexByte("&=#;+%", c) >= 0 {
				return TokenSource{}, fmt.Errorf("token source %q: %q is not a plain query parameter name", yamlwalk.Clip(s), yamlwalk.Clip(name))
			}
		}
		return TokenSource{FromQuery, name}, nil
	case FromCookie:
		if !isToken(name) {
			return TokenSource{}, fmt.Errorf("token source %q: %q is not a valid cookie name", yamlwalk.Clip(s), yamlwalk.Clip(name))
		}
		return TokenSource{FromCookie, name}, nil
	case FromSubprotocol:
		if !isToken(name) {
			return TokenSource{}, fmt.Errorf("token source %q: %q is not a valid subprotocol prefix (an HTTP token)", yamlwalk.Clip(s), yamlwalk.Clip(name))
		}
		return TokenSource{FromSubprotocol, name}, nil
	}
	return TokenSource{}, fmt.Errorf("token source %q: unknown kind %q (header, query, cookie or subprotocol)", yamlwalk.Clip(s), yamlwalk.Clip(kind))
}

// hopByHopAuth are headers that never reach the upstream as they are sent,
// so they can neither carry a token nor be set from claims.
var hopByHopAuth = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Host": true, "Content-Length": true,
}

// Algorithms the JWT check knows ("alg", RFC 7518 §3.1; EdDSA, RFC 8037).
var (
	hmacAlgs       = []string{"HS256", "HS384", "HS512"}
	publicKeyAlgs  = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	authKeys       = []string{"jwt", "forward"}
	jwtKeys        = []string{"jwks_url", "keys", "secret_file", "algorithms", "issuer", "audience", "leeway", "token_from", "forward_token", "claims_to_headers", "expiry"}
	forwardKeys    = []string{"url", "timeout", "copy_headers"}
	defaultFwdWait = 2 * time.Second
)

// IsHMAC reports whether alg is an HMAC algorithm (a shared secret, not a
// public key).
func IsHMAC(alg string) bool { return slices.Contains(hmacAlgs, alg) }

// authBlock parses `auth:`. "off" (or false) turns off an auth block
// inherited from defaults; it returns nil then. ok is false when the block
// had errors.
func (p *parser) authBlock(v yamlwalk.Val) (a *Auth, ok bool) {
	n := yamlwalk.Deref(v.N)
	if n != nil && n.Kind == yaml.ScalarNode {
		if n.Value == "off" || n.ShortTag() == "!!bool" && n.Value == "false" {
			p.Accept(v)
			return nil, true
		}
		p.Errf(v.Line, v.Key, "want a mapping with jwt: or forward:, or \"off\", got %s", yamlwalk.Describe(n))
		return nil, false
	}
	errs := len(p.Errs)
	a = &Auth{}
	for _, f := range p.Fields(v, authKeys) {
		switch f.Name {
		case "jwt":
			p.Accept(f.V)
			a.JWT = p.jwtBlock(f.V)
		case "forward":
			p.Accept(f.V)
			a.Forward = p.forwardBlock(f.V)
		}
	}
	_, haveJWT := p.Lines[yamlwalk.Join(v.Key, "jwt")]
	_, haveFwd := p.Lines[yamlwalk.Join(v.Key, "forward")]
	switch {
	case !haveJWT && !haveFwd && len(p.Errs) == errs:
		p.Errf(v.Line, v.Key, "want jwt: or forward: (or \"off\" to turn off an auth block from defaults)")
	}
	if len(p.Errs) > errs {
		return nil, false
	}
	p.Accept(v)
	return a, true
}

func (p *parser) jwtBlock(v yamlwalk.Val) *JWTAuth {
	j := &JWTAuth{Expiry: ExpiryClose}
	algKey := yamlwalk.Join(v.Key, "algorithms")
	var algLines []yamlwalk.Val
	// Key sources written with a value, even a wrong one (that was
	// reported where it is).
	urlSet, keysSet, secretSet := false, false, false
	for _, f := range p.Fields(v, jwtKeys) {
		switch f.Name {
		case "jwks_url":
			if s, ok := p.Str(f.V); ok && s != "" {
				urlSet = true
				if err := checkJWKSURL(s); err != nil {
					p.Errf(f.V.Line, f.V.Key, "%v", err)
					continue
				}
				j.JWKSURL = s
			}
		case "keys":
			p.Accept(f.V)
			for _, item := range p.Items(f.V) {
				s, ok := p.Str(item)
				if !ok {
					continue
				}
				keysSet = true
				k, err := readPublicKey(s)
				if err != nil {
					p.Errf(item.Line, item.Key, "%v", err)
					continue
				}
				j.KeyFiles = append(j.KeyFiles, s)
				j.Keys = append(j.Keys, k)
			}
		case "secret_file":
			if s, ok := p.Str(f.V); ok && s != "" {
				secretSet = true
				b, err := readSmallFile(s)
				if err == nil {
					b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
					if len(b) == 0 {
						err = fmt.Errorf("%s: the file is empty", s)
					}
				}
				if err != nil {
					p.Errf(f.V.Line, f.V.Key, "%v", err)
					continue
				}
				if len(b) < 32 {
					p.Warnf(f.V.Line, f.V.Key, "the secret is %d bytes: HS256 wants at least 32 (RFC 7518 §3.2)", len(b))
				}
				j.SecretFile, j.Secret = s, b
			}
		case "algorithms":
			p.Accept(f.V)
			for _, item := range p.Items(f.V) {
				s, ok := p.Str(item)
				if !ok {
					continue
				}
				switch {
				case strings.EqualFold(s, "none"):
					p.Errf(item.Line, item.Key, "\"none\" is never allowed: an unsigned token proves nothing")
				case !IsHMAC(s) && !slices.Contains(publicKeyAlgs, s):
					msg := fmt.Sprintf("unknown algorithm %q (known: %s)", yamlwalk.Clip(s), strings.Join(slices.Concat(publicKeyAlgs, hmacAlgs), ", "))
					if u := strings.ToUpper(s); u != s && (IsHMAC(u) || slices.Contains(publicKeyAlgs, u)) {
						msg = fmt.Sprintf("unknown algorithm %q (did you mean %q?)", yamlwalk.Clip(s), u)
					}
					p.Errf(item.Line, item.Key, "%s", msg)
				case slices.Contains(j.Algorithms, s):
					p.Errf(item.Line, item.Key, "algorithm %s is listed twice", s)
				default:
					j.Algorithms = append(j.Algorithms, s)
					algLines = append(algLines, item)
				}
			}
		case "issuer":
			j.Issuer, _ = p.Str(f.V)
		case "audience":
			if n := yamlwalk.Deref(f.V.N); n != nil && n.Kind == yaml.ScalarNode {
				if s, ok := p.Str(f.V); ok && s != "" {
					j.Audience = []string{s}
				}
				continue
			}
			for _, item := range p.Items(f.V) {
				if s, ok := p.Str(item); ok && s != "" {
					j.Audience = append(j.Audience, s)
				}
			}
		case "leeway":
			if d, ok := p.Duration(f.V); ok {
				if d > 5*time.Minute {
					p.Warnf(f.V.Line, f.V.Key, "leeway %s is long: expired tokens are accepted that much longer", d)
				}
				j.Leeway = d
			}
		case "token_from":
			seen := map[TokenSource]bool{}
			for _, item := range p.Items(f.V) {
				s, ok := p.Str(item)
				if !ok {
					continue
				}
				src, err := ParseTokenSource(s)
				if err != nil {
					p.Errf(item.Line, item.Key, "%v", err)
					continue
				}
				if seen[src] {
					p.Errf(item.Line, item.Key, "token source %s is listed twice", src)
					continue
				}
				seen[src] = true
				j.TokenFrom = append(j.TokenFrom, src)
			}
			if n := yamlwalk.Deref(f.V.N); n != nil && n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
				p.Errf(f.V.Line, f.V.Key, "must name at least one source, e.g. [\"header:Authorization\"]")
			}
		case "forward_token":
			j.ForwardToken, _ = p.Bool(f.V)
		case "claims_to_headers":
			j.ClaimsToHeaders = p.authHeaderMap(f.V)
		case "expiry":
			if s, ok := p.OneOf(f.V, string(ExpiryClose), string(ExpiryIgnore)); ok { // close | ignore
				j.Expiry = Expiry(s)
			}
		}
	}
	if len(j.TokenFrom) == 0 {
		j.TokenFrom = []TokenSource{{FromHeader, "Authorization"}}
	}
	haveKeys := j.JWKSURL != "" || len(j.KeyFiles) > 0
	// Written, even if wrongly (that was reported where it is).
	wroteKeys := urlSet || keysSet
	if _, set := p.Lines[algKey]; !set {
		// Not written: every algorithm the configured keys can verify.
		if haveKeys {
			j.Algorithms = append(j.Algorithms, publicKeyAlgs...)
		}
		if j.Secret != nil {
			j.Algorithms = append(j.Algorithms, hmacAlgs...)
		}
	} else {
		for i, alg := range j.Algorithms {
			key, line := algLines[i].Key, algLines[i].Line
			switch {
			case IsHMAC(alg) && !secretSet:
				p.Errf(line, key, "%s needs secret_file (an HMAC secret is never taken from a public key)", alg)
			case !IsHMAC(alg) && !wroteKeys:
				p.Errf(line, key, "%s needs jwks_url or keys (public keys)", alg)
			}
		}
	}
	if !wroteKeys && !secretSet {
		p.Errf(v.Line, v.Key, "needs a key source: jwks_url, keys (PEM public key files) or secret_file")
	}
	if j.Secret != nil && haveKeys {
		p.Warnf(v.Line, yamlwalk.Join(v.Key, "secret_file"), "both an HMAC secret and public keys: each token is checked with the kind of key its alg names")
	}
	return j
}

func (p *parser) forwardBlock(v yamlwalk.Val) *ForwardAuth {
	fa := &ForwardAuth{Timeout: defaultFwdWait}
	haveURL := false
	for _, f := range p.Fields(v, forwardKeys) {
		switch f.Name {
		case "url":
			haveURL = true
			s, ok := p.Str(f.V)
			if !ok {
				continue
			}
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
				p.Errf(f.V.Line, f.V.Key, "want an http:// or https:// URL of the auth service, e.g. http://auth.internal:8000/check, got %q", yamlwalk.Clip(s))
				continue
			}
			fa.URL = u
		case "timeout":
			if d, ok := p.PositiveDuration(f.V); ok {
				fa.Timeout = d
			}
		case "copy_headers":
			seen := map[string]bool{}
			for _, item := range p.Items(f.V) {
				s, ok := p.Str(item)
				if !ok {
					continue
				}
				name, err := authHeaderName(s)
				if err != nil {
					p.Errf(item.Line, item.Key, "%v", err)
					continue
				}
				if seen[name] {
					p.Errf(item.Line, item.Key, "header %s is listed twice", name)
					continue
				}
				seen[name] = true
				fa.CopyHeaders = append(fa.CopyHeaders, name)
			}
		}
	}
	if !haveURL {
		p.Errf(v.Line, yamlwalk.Join(v.Key, "url"), "required: the auth service's URL, e.g. http://auth.internal:8000/check")
	}
	return fa
}

// authHeaderMap parses claims_to_headers: claim name -> header name.
func (p *parser) authHeaderMap(v yamlwalk.Val) map[string]string {
	out := map[string]string{}
	byHeader := map[string]string{}
	for _, f := range p.Fields(v, nil) {
		s, ok := p.Str(f.V)
		if !ok {
			continue
		}
		name, err := authHeaderName(s)
		if err != nil {
			p.Errf(f.V.Line, f.V.Key, "%v", err)
			continue
		}
		if prev, dup := byHeader[name]; dup {
			p.Errf(f.V.Line, f.V.Key, "header %s already carries claim %q", name, prev)
			continue
		}
		byHeader[name] = f.Name
		out[f.Name] = name
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// authHeaderName checks a header the gateway sets upstream from a claim or
// the auth service's answer.
func authHeaderName(s string) (string, error) {
	if !isToken(s) {
		return "", fmt.Errorf("%q is not a valid header name", yamlwalk.Clip(s))
	}
	c := http.CanonicalHeaderKey(s)
	switch {
	case strings.HasPrefix(c, "Sec-Websocket-"):
		return "", fmt.Errorf("%s cannot be set: the gateway makes its own handshake with the upstream", c)
	case hopByHopAuth[c], c == "Cookie", c == "Authorization":
		return "", fmt.Errorf("%s cannot be set from authentication", c)
	case forbiddenSetHeaders[c] != "":
		return "", fmt.Errorf("%s cannot be set: it is %s", c, forbiddenSetHeaders[c])
	}
	return c, nil
}

// checkJWKSURL: keys fetched over plain HTTP could be replaced by anyone on
// the path, so only https, or http to this machine.
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("want an https:// URL of a JWK Set, got %q", yamlwalk.Clip(s))
	}
	if u.Scheme == "http" && !isLoopbackHost(strings.ToLower(u.Hostname())) {
		return fmt.Errorf("jwks_url %q must use https:// (plain http is allowed only to a loopback address): keys fetched over http can be replaced by anyone on the path", yamlwalk.Clip(s))
	}
	return nil
}

// readPublicKey reads a PEM public key (PKIX "PUBLIC KEY", PKCS #1 "RSA
// PUBLIC KEY") or certificate: RSA, ECDSA or Ed25519.
func readPublicKey(path string) (crypto.PublicKey, error) {
	b, err := readSmallFile(path)
	if err != nil {
		return nil, err
	}
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM public key or certificate in the file", path)
		}
		var k any
		switch blk.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				k = c.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			return nil, fmt.Errorf("%s: holds a private key: give the gateway the public key only", path)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		switch k.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			return k, nil
		}
		return nil, fmt.Errorf("%s: %T keys are not supported (RSA, ECDSA or Ed25519)", path, k)
	}
}

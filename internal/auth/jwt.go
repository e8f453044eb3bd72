package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"wsgate/internal/config"
)

// jwtCheck is a route's auth.jwt.
type jwtCheck struct {
	cfg    *config.JWTAuth
	set    *jwks // nil: no jwks_url
	parser *jwt.Parser
	now    func() time.Time // tests
}

func newJWT(cfg *config.JWTAuth, reg *Registry) *jwtCheck {
	j := &jwtCheck{cfg: cfg, now: time.Now}
	if cfg.JWKSURL != "" {
		j.set = reg.set(cfg.JWKSURL)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.Algorithms), // before any key is looked at
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(func() time.Time { return j.now() }),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if len(cfg.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(cfg.Audience...))
	}
	j.parser = jwt.NewParser(opts...)
	return j
}

// WWW-Authenticate values (RFC 6750 §3).
const (
	challengeMissing = `Bearer`
	challengeInvalid = `Bearer error="invalid_token"`
)

func (j *jwtCheck) check(ctx context.Context, r *http.Request, res *Result) {
	tok, src, ok := j.find(r)
	if !ok {
		res.deny(http.StatusUnauthorized, OutcomeMissing, "no token", "WWW-Authenticate", challengeMissing)
		return
	}
	res.source = src
	claims := jwt.MapClaims{}
	_, err := j.parser.ParseWithClaims(tok, claims, j.keyfunc(ctx))
	switch {
	case errors.Is(err, errKeysUnavailable):
		res.deny(http.StatusServiceUnavailable, OutcomeError, "signing keys unavailable (JWK Set never fetched)", "Retry-After", "5")
		return
	case errors.Is(err, jwt.ErrTokenExpired):
		res.deny(http.StatusUnauthorized, OutcomeExpired, "token expired", "WWW-Authenticate", challengeInvalid)
		return
	case err != nil:
		res.deny(http.StatusUnauthorized, OutcomeInvalid, "invalid token: "+reasonOf(err), "WWW-Authenticate", challengeInvalid)
		return
	}
	res.Allow, res.Outcome = true, OutcomeOK
	res.User, _ = claims.GetSubject()
	if exp, _ := claims.GetExpirationTime(); exp != nil && j.cfg.Expiry == config.ExpiryClose {
		res.Expires = exp.Time
	}
	for claim, header := range j.cfg.ClaimsToHeaders {
		if v, ok := claimValue(claims[claim]); ok {
			res.set(header, v)
		}
	}
}

// reasonOf is the first line of a verification error, for the log and the
// 401's body: which check failed, never the token. Clipped: it may quote a
// kid the client chose.
func reasonOf(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimPrefix(s, "token has invalid claims: ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// claimValue turns a claim into a header value: strings as they are,
// numbers and booleans as JSON writes them, a list of strings joined with
// ", ", anything else as JSON. A value with control characters is dropped
// (it could split the header).
func claimValue(v any) (string, bool) {
	var s string
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		s = x
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(x)
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			es, ok := e.(string)
			if !ok {
				b, _ := json.Marshal(x)
				s = string(b)
				parts = nil
				break
			}
			parts = append(parts, es)
		}
		if parts != nil {
			s = strings.Join(parts, ", ")
		}
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return "", false
		}
		s = string(b)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return "", false
		}
	}
	return s, true
}

// keyfunc returns the keys that may verify t: by the kind its alg names
// (HMAC: the secret; RSA, ECDSA, Ed25519: public keys of that type, from
// the JWK Set by kid — fetched again for an unknown kid — and the PEM
// files).
func (j *jwtCheck) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if config.IsHMAC(alg) {
			if j.cfg.Secret == nil {
				return nil, errors.New("no HMAC secret configured")
			}
			return j.cfg.Secret, nil
		}
		var ks jwt.VerificationKeySet
		for _, k := range j.cfg.Keys {
			if keyFits(alg, k) {
				ks.Keys = append(ks.Keys, k)
			}
		}
		if j.set != nil {
			kf, err := j.set.keys(ctx)
			if err != nil && len(ks.Keys) == 0 {
				return nil, err
			}
			if kf != nil {
				k, err := kf.Keyfunc(t)
				if errors.Is(err, jwkset.ErrKeyNotFound) && len(ks.Keys) == 0 {
					if kf, err = j.set.refetchUnknown(ctx); err == nil {
						k, err = kf.Keyfunc(t)
					}
				}
				if err == nil {
					ks.Keys = append(ks.Keys, fitting(alg, k)...)
				}
			}
		}
		if len(ks.Keys) == 0 {
			return nil, fmt.Errorf("no %s key for kid %q", alg, kidOf(t))
		}
		return ks, nil
	}
}

func kidOf(t *jwt.Token) string {
	s, _ := t.Header["kid"].(string)
	return s
}

// fitting is the keys of k (a key or a jwt.VerificationKeySet) that alg
// may use.
func fitting(alg string, k any) []jwt.VerificationKey {
	var out []jwt.VerificationKey
	switch x := k.(type) {
	case jwt.VerificationKeySet:
		for _, e := range x.Keys {
			if keyFits(alg, e) {
				out = append(out, e)
			}
		}
	default:
		if keyFits(alg, x) {
			out = append(out, x)
		}
	}
	return out
}

// keyFits reports whether key is of the type alg verifies with: this is
// what stops an RS256 key from being used for an HS256 token.
func keyFits(alg string, key any) bool {
	switch {
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		_, ok := key.(*rsa.PublicKey)
		return ok
	case strings.HasPrefix(alg, "ES"):
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		bits := map[string]int{"ES256": 256, "ES384": 384, "ES512": 521}[alg]
		return k.Curve.Params().BitSize == bits
	case alg == "EdDSA":
		_, ok := key.(ed25519.PublicKey)
		return ok
	}
	return false
}

// find returns the token from the first configured source present.
func (j *jwtCheck) find(r *http.Request) (string, config.TokenSource, bool) {
	for _, src := range j.cfg.TokenFrom {
		if tok, ok := lookup(r, src); ok {
			return tok, src, true
		}
	}
	return "", config.TokenSource{}, false
}

// lookup returns the token src holds in r, if any.
func lookup(r *http.Request, src config.TokenSource) (string, bool) {
	switch src.Kind {
	case config.FromHeader:
		v := strings.TrimSpace(r.Header.Get(src.Name))
		if scheme, rest, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			v = strings.TrimSpace(rest)
		} else if src.Name == "Authorization" {
			return "", false // another scheme (Basic...) is not ours
		}
		return v, v != ""
	case config.FromQuery:
		for _, kv := range queryPairs(r.URL.RawQuery) {
			if kv.key == src.Name && kv.val != "" {
				return kv.val, true
			}
		}
	case config.FromCookie:
		for _, c := range r.CookiesNamed(src.Name) {
			if c.Value != "" {
				return c.Value, true
			}
		}
	case config.FromSubprotocol:
		for _, p := range offers(r.Header) {
			if rest, ok := strings.CutPrefix(p, src.Name); ok && rest != "" {
				return subprotocolToken(rest), true
			}
		}
	}
	return "", false
}

// subprotocolToken is the token carried after a subprotocol prefix: as it
// is, or base64url-encoded (Kubernetes' base64url.bearer.authorization.k8s.io.
// form, for tokens that are not subprotocol tokens themselves).
func subprotocolToken(s string) string {
	if strings.Count(s, ".") == 2 {
		return s
	}
	if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")); err == nil && strings.Count(string(b), ".") == 2 {
		return string(b)
	}
	return s
}

// offers is the Sec-WebSocket-Protocol offers, in order.
func offers(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Sec-Websocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// strip removes the credential from every configured source present (a
// token that was not the one used is still a credential). Token
// subprotocols are removed whatever forward_token says (Apply, Offer).
func (j *jwtCheck) strip(r *http.Request) {
	for _, src := range j.cfg.TokenFrom {
		if src.Kind == config.FromSubprotocol {
			continue // Offer and removeOffer
		}
		switch src.Kind {
		case config.FromHeader:
			if _, ok := lookup(r, src); ok {
				r.Header.Del(src.Name)
			}
		case config.FromQuery:
			// Even empty: a credential parameter never goes upstream.
			if q := dropQuery(r.URL.RawQuery, src.Name); q != r.URL.RawQuery {
				r.URL.RawQuery = q
				r.URL.ForceQuery = false
				r.RequestURI = ""
			}
		case config.FromCookie:
			dropCookie(r.Header, src.Name)
		}
	}
}

// isTokenOffer reports whether a subprotocol offer carries a token.
func (j *jwtCheck) isTokenOffer(p string) bool {
	return slices.ContainsFunc(j.cfg.TokenFrom, func(src config.TokenSource) bool {
		return src.Kind == config.FromSubprotocol && strings.HasPrefix(p, src.Name)
	})
}

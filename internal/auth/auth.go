package auth

import (
	"context"
	"net/http"
	"time"

	"wsgate/internal/config"
)

// Outcomes: the result label of wsgate_auth_total.
const (
	OutcomeOK      = "ok"
	OutcomeMissing = "missing" // no token in any configured source
	OutcomeInvalid = "invalid" // bad signature, alg, iss, aud, nbf, unknown kid, malformed
	OutcomeExpired = "expired"
	OutcomeDenied  = "denied" // the auth service answered a non-2xx (not 5xx)
	OutcomeError   = "error"  // no key or auth service to ask; the auth service failed (5xx)
)

// Auth is a route's authentication, built once per config snapshot.
type Auth struct {
	jwt *jwtCheck
	fwd *forwardCheck
	// owned are the headers the gateway sets upstream: client-sent copies
	// are removed first (claims_to_headers, copy_headers).
	owned []string
}

// New builds the check cfg describes; reg shares JWK Sets and HTTP clients
// across routes and reloads. A nil cfg gives a nil *Auth, whose Check
// allows everything.
func New(cfg *config.Auth, reg *Registry) *Auth {
	if cfg == nil {
		return nil
	}
	a := &Auth{}
	if cfg.JWT != nil {
		a.jwt = newJWT(cfg.JWT, reg)
		for _, h := range cfg.JWT.ClaimsToHeaders {
			a.owned = append(a.owned, h)
		}
	}
	if cfg.Forward != nil {
		a.fwd = &forwardCheck{cfg: cfg.Forward, client: reg.fwd}
		a.owned = append(a.owned, cfg.Forward.CopyHeaders...)
	}
	return a
}

// Result is what Check decided.
type Result struct {
	Allow bool
	// On a refusal: the answer to send (Header holds WWW-Authenticate,
	// Location, Set-Cookie, Retry-After, Content-Type as they apply; Body
	// is nil for the gateway's own refusals, which are plain text of
	// Reason).
	Status int
	Header http.Header
	Body   []byte
	// Reason says why, for the log (never the token).
	Reason string
	// Outcome is the wsgate_auth_total result label.
	Outcome string
	// User is the sub claim, or the auth service's X-User-Id when copied.
	User string
	// Expires is the token's exp when the session must end then (expiry:
	// close); zero otherwise.
	Expires time.Time
	// Set are the headers to send upstream (claims_to_headers,
	// copy_headers), canonical names.
	Set http.Header

	a      *Auth
	source config.TokenSource
}

func (res *Result) deny(status int, outcome, reason string, kv ...string) {
	res.Allow, res.Status, res.Outcome, res.Reason = false, status, outcome, reason
	if len(kv) > 0 {
		res.Header = make(http.Header, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			res.Header.Add(kv[i], kv[i+1])
		}
	}
}

func (res *Result) set(name, value string) {
	if res.Set == nil {
		res.Set = make(http.Header)
	}
	res.Set.Add(name, value)
}

// Check authenticates r, a WebSocket upgrade or any other request, before
// anything is dialled. client is the client's address as the gateway
// reports it (X-Forwarded-For toward the auth service), proto "http" or
// "https" as the client reached the gateway. r is not modified: on Allow,
// Apply rewrites it for the upstream. A nil *Auth allows everything.
func (a *Auth) Check(ctx context.Context, r *http.Request, client, proto string) Result {
	res := Result{a: a}
	if a == nil {
		res.Allow, res.Outcome = true, OutcomeOK
		return res
	}
	if a.jwt != nil {
		a.jwt.check(ctx, r, &res)
		if !res.Allow {
			return res
		}
	}
	if a.fwd != nil {
		a.fwd.check(ctx, r, client, proto, &res)
	}
	return res
}

// Apply rewrites an allowed request for the upstream: the credential goes
// (unless forward_token), so do client-sent copies of the headers the
// gateway sets, and then those are set. The token subprotocol is removed
// from Sec-WebSocket-Protocol (see also Offer).
func (res *Result) Apply(r *http.Request) {
	a := res.a
	if a == nil || !res.Allow {
		return
	}
	for _, h := range a.owned {
		r.Header.Del(h)
	}
	if j := a.jwt; j != nil {
		dropOffer(r.Header, j.isTokenOffer)
		if !j.cfg.ForwardToken {
			j.strip(r)
		}
	}
	for k, vs := range res.Set {
		r.Header[k] = vs
	}
}

// Offer is the client's subprotocol offers minus those that carry a token:
// what may be offered upstream (the other offers go on, and the upstream's
// choice among them reaches the client).
func (res *Result) Offer(protocols []string) []string {
	a := res.a
	if a == nil || a.jwt == nil {
		return protocols
	}
	var out []string
	for _, p := range protocols {
		if !a.jwt.isTokenOffer(p) {
			out = append(out, p)
		}
	}
	return out
}

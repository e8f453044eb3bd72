package proxy

// Authentication at the edge (README "Authentication"): the route's auth
// check runs after the handshake-rate limit and before connections_per_ip,
// max_connections and any dial. The check itself is internal/auth's; this
// file wires it into the handshake and answers its refusals.

import (
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"wsgate/handshake"
	"wsgate/internal/auth"
)

// authState is the gateway's auth registry: JWK Sets and HTTP clients
// shared by every route and kept across reloads (a reload neither refetches
// keys nor loses them while the IdP is down).
type authState struct {
	once sync.Once
	reg  *auth.Registry
}

// newAuth builds rs's auth check (nil: none).
func (g *Gateway) newAuth(rs *routeState) *auth.Auth {
	if rs.cfg.Settings.Auth == nil {
		return nil
	}
	g.auth.once.Do(func() { g.auth.reg = auth.NewRegistry(g.log) })
	return auth.New(rs.cfg.Settings.Auth, g.auth.reg)
}

// authed is what a passed auth check gives the session.
type authed struct {
	user    string
	expires time.Time // zero: no deadline
}

// authenticate runs rs's auth check on r, an upgrade or any other request
// of the route. On a refusal it answers the client and reports false. On
// success r is ready for the upstream: the credential removed (unless
// forward_token), the claims or auth-service headers set; and *offers (an
// upgrade's subprotocol offers; nil for other requests) no longer holds a
// token subprotocol. Not inlined: its Result must not take room in
// ServeHTTP's frame.
//
//go:noinline
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, rs *routeState, client netip.Addr, offers *[]string) (authed, bool) {
	if rs.auth == nil {
		return authed{}, true
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	res := rs.auth.Check(r.Context(), r, client.String(), proto)
	g.metrics.AuthResult(rs.cfg.Name, res.Outcome)
	if !res.Allow {
		g.authRefused(w, r, rs.cfg.Name, &res)
		return authed{}, false
	}
	if offers != nil {
		*offers = res.Offer(*offers)
	}
	res.Apply(r)
	return authed{user: res.User, expires: res.Expires}, true
}

// authRefused answers a refused check: the gateway's own refusal as plain
// text (401 with WWW-Authenticate, 503), or the auth service's answer with
// its body.
func (g *Gateway) authRefused(w http.ResponseWriter, r *http.Request, route string, res *auth.Result) {
	if res.Body == nil {
		g.reject(w, r, route, &handshake.Rejection{Status: res.Status, Reason: res.Reason, Header: res.Header})
		return
	}
	h := w.Header()
	for k, vs := range res.Header {
		h[k] = vs
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	h.Set("Content-Length", strconv.Itoa(len(res.Body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(res.Status)
	_, _ = w.Write(res.Body)
	g.logReject(r, route, res.Status, res.Reason)
}

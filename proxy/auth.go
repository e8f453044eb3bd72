package proxy

// Authentication at the edge (README "Authentication"): the route's auth
// check runs after the handshake-rate limit and before connections_per_ip,
// max_connections and any dial. The check itself is internal/auth's; this
// file wires it into the handshake and answers its refusals.

import (
	"errors"
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

// authenticate runs rs's auth check on the upgrade r. On a refusal it
// answers the client (and logs the rejection) and reports false. On
// success r is ready for the upstream: the credential removed (unless
// forward_token), the claims or auth-service headers set; and *offers, the
// upgrade's subprotocol offers, no longer holds a token subprotocol. Not
// inlined: its Result must not take room in ServeHTTP's frame.
//
//go:noinline
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, rs *routeState, client netip.Addr, offers *[]string) (authed, bool) {
	if rs.auth == nil {
		return authed{}, true
	}
	res := g.checkAuth(r, rs, client, offers)
	if !res.Allow {
		writeAuthRefusal(w, &res)
		g.logReject(r, rs.cfg.Name, res.Status, res.Reason)
		return authed{}, false
	}
	return authed{user: res.User, expires: res.Expires}, true
}

// authenticateHTTP is authenticate for a request that is not an upgrade
// on an http: proxy route: a refusal is recorded on st for the request's
// access line (event "http") instead of a rejection line.
func (g *Gateway) authenticateHTTP(w http.ResponseWriter, r *http.Request, st *httpRequest) bool {
	rs := st.rs
	if rs.auth == nil {
		return true
	}
	res := g.checkAuth(r, rs, st.client, nil)
	if !res.Allow {
		st.status, st.err = res.Status, errors.New("auth: "+res.Reason)
		writeAuthRefusal(w, &res)
		return false
	}
	st.user = res.User
	return true
}

// checkAuth runs the check and counts it; an allowed request is rewritten
// for the upstream (Apply), and *offers filtered when not nil.
func (g *Gateway) checkAuth(r *http.Request, rs *routeState, client netip.Addr, offers *[]string) auth.Result {
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	res := rs.auth.Check(r.Context(), r, client.String(), proto)
	g.metrics.AuthResult(rs.cfg.Name, res.Outcome)
	if res.Allow {
		if offers != nil {
			*offers = res.Offer(*offers)
		}
		res.Apply(r)
	}
	return res
}

// writeAuthRefusal answers a refused check: the gateway's own refusal as
// plain text (401 with WWW-Authenticate, 503), or the auth service's answer
// with its body.
func writeAuthRefusal(w http.ResponseWriter, res *auth.Result) {
	if res.Body == nil {
		handshake.WriteRejection(w, &handshake.Rejection{Status: res.Status, Reason: res.Reason, Header: res.Header})
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
}

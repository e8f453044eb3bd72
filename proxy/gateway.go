package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"wsgate/frame"
	"wsgate/handshake"
	"wsgate/internal/auth"
	"wsgate/internal/balance"
	"wsgate/internal/cluster"
	"wsgate/internal/config"
	"wsgate/internal/echo"
	"wsgate/internal/listen"
	"wsgate/internal/metrics"
	"wsgate/internal/relay"
	"wsgate/internal/route"
	"wsgate/ratelimit"
)

// maxAttempts is how many upstreams one handshake tries (docs/handshake.md
// "Dialling the upstream").
const maxAttempts = 3

// Gateway is the WebSocket gateway: an http.Handler that performs the
// client's opening handshake after the upstream's, then relays frames.
type Gateway struct {
	log    zerolog.Logger
	snap   atomic.Pointer[snapshot]
	reg    registry
	active atomic.Int64 // open sessions
	// slots counts open sessions plus handshakes that passed the
	// max_connections check and are dialling: reserved before the dial, so
	// that concurrent handshakes cannot overshoot the cap.
	slots atomic.Int64
	// lifecycle serialises Reload and the admin drain: a drain that ran
	// half-way through a reload could mark an upstream of the snapshot
	// being replaced, or have its mark cleared by the reload right after.
	lifecycle sync.Mutex
	limits    limitRegistry // per-route limiter state, across reloads
	draining  atomic.Bool
	tls       tlsState
	metrics   *metrics.Metrics
	gate      listen.Gate // what the listeners share (unfinished handshakes, fd alarms)
	// hooks lets tests widen race windows in the relay (session.go
	// relayHooks); nil in production.
	hooks atomic.Pointer[relay.Hooks]
	poll  *relay.Poller // parked legs; nil where legs do not park
	// cluster is the shared store of several instances; nil alone
	// (cluster.go).
	cluster *cluster.Cluster
	// clusterAPI carries the sessions API to the other instances; nil
	// without a cluster or outside Serve (sessions_cluster.go).
	clusterAPI *clusterSessions
	sess       sessionsState // the sessions API and events (sessions.go)
	// streams is done when the gateway starts to shut down: event streams
	// proxied for http: proxy routes end then, since they would never end
	// by themselves within shutdown_grace (http.go).
	streams     context.Context
	stopStreams context.CancelFunc
	auth        authState // JWK Sets and auth HTTP clients (auth.go)
}

// snapshot is one loaded config with everything built from it. A session
// keeps the snapshot it started with; a reload swaps in a new one.
type snapshot struct {
	cfg    *config.Config
	router *route.Router
	routes []*routeState
}

// routeState is a route with its upstream pool and dialer.
type routeState struct {
	cfg      *config.Route
	pool     *balance.Pool
	configOf map[*balance.Backend]*config.Upstream // each backend's config entry
	dialer   *handshake.Dialer
	echo     *handshake.Dialer // for builtin:echo upstreams
	session  relay.Config
	limits   *routeLimits    // set by provision
	http     *httpProxy      // http: proxy routes; nil otherwise
	sticky   *balance.Sticky // balance: cookie routes; nil otherwise
	auth     *auth.Auth      // set by provision; nil: no auth
}

// New builds a gateway for cfg.
func New(cfg *config.Config, log zerolog.Logger) (*Gateway, error) {
	g := &Gateway{log: log}
	g.streams, g.stopStreams = context.WithCancel(context.Background())
	g.gate.Log = log
	g.gate.Rejected = g.listenerRejected
	g.reg.init()
	// The poller for parked legs, now: at the open-file cap it could not
	// be created later. Serve closes it when it returns.
	g.poll = relay.NewPoller()
	g.metrics = metrics.New(g.metricRoutes)
	g.sess.metrics = g.metrics.NewSessionsAPI()
	snap, err := buildSnapshot(cfg)
	if err != nil {
		return nil, err
	}
	if err := g.joinCluster(cfg); err != nil {
		return nil, err
	}
	g.provision(snap, nil)
	g.snap.Store(snap)
	return g, nil
}

func buildSnapshot(cfg *config.Config) (*snapshot, error) {
	snap := &snapshot{cfg: cfg}
	keys := make([]route.Key, len(cfg.Routes))
	for i, r := range cfg.Routes {
		keys[i] = route.Key{Host: r.Host, Path: r.Path, Index: i}
		rs, err := buildRoute(cfg, r)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", r.Name, err)
		}
		snap.routes = append(snap.routes, rs)
	}
	router, err := route.New(keys)
	if err != nil {
		return nil, err
	}
	snap.router = router
	return snap, nil
}

func buildRoute(cfg *config.Config, r *config.Route) (*routeState, error) {
	bal := policyOf(r.Balance)
	rs := &routeState{cfg: r, configOf: make(map[*balance.Backend]*config.Upstream)}
	var backends []*balance.Backend
	for i := range r.Upstreams {
		u := &r.Upstreams[i]
		b := balance.NewBackend(u.Raw, u.Weight)
		rs.configOf[b] = u
		backends = append(backends, b)
	}
	rs.pool = balance.NewPool(bal, backends)
	tlsCfg := &tls.Config{
		ServerName:         r.UpstreamTLS.ServerName,
		InsecureSkipVerify: r.UpstreamTLS.InsecureSkipVerify,
		MinVersion:         tls.VersionTLS12,
	}
	if r.UpstreamTLS.CA != "" {
		pem, err := os.ReadFile(r.UpstreamTLS.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream_tls.ca %s: no certificate", r.UpstreamTLS.CA)
		}
		tlsCfg.RootCAs = pool
	}
	rs.dialer = &handshake.Dialer{TLSConfig: tlsCfg}
	rs.echo = &handshake.Dialer{NetDialContext: echo.Dial}
	if r.HTTP == config.HTTPProxy {
		rs.http = newHTTPProxy(rs, tlsCfg)
	}
	rs.setSticky()
	set := r.Settings
	rs.session = relay.Config{
		PingInterval: set.PingInterval,
		PongTimeout:  set.PongTimeout,
		IdleTimeout:  set.IdleTimeout,
		CloseTimeout: set.CloseTimeout,
		WriteTimeout: set.WriteTimeout,
		MaxFrame:     int64(set.EffectiveMaxFrameBytes()),
		MaxMessage:   int64(set.MaxMessageBytes),
		FailureCode:  frame.CloseCode(cfg.Server.UpstreamFailureCode),
		ShutdownCode: frame.CloseCode(cfg.Server.ShutdownCloseCode),
	}
	return rs, nil
}

// Config returns the config in force.
func (g *Gateway) Config() *config.Config { return g.snap.Load().cfg }

// ServeHTTP handles one opening handshake (docs/handshake.md):
// route, protocol checks, Origin and limits, then the upstream's handshake,
// and only then the client's 101 and the relay.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	listen.Handled(r.Context()) // every answer from here on is logged here
	snap := g.snap.Load()
	// net/http enforces max_header_bytes itself, but never below 4 KiB
	// (see listen.HTTPMaxHeaderBytes): a smaller configured value is checked here.
	if max := int(snap.cfg.Server.MaxHeaderBytes); max < listen.HTTPHeaderSlop && headBytes(r) > max {
		g.refuse(w, r, "", http.StatusRequestHeaderFieldsTooLarge, "request headers larger than max_header_bytes",
			"Connection", "close")
		return
	}
	idx, ok := snap.router.Match(r.Host, r.URL.Path)
	if !ok {
		g.refuse(w, r, "", http.StatusNotFound, "no route for this host and path")
		return
	}
	rs := snap.routes[idx]
	if rs.http != nil && !isUpgrade(r) {
		g.serveHTTP(w, r, snap, rs)
		return
	}
	req, rej := handshake.Check(r)
	if rej != nil {
		g.reject(w, r, rs.cfg.Name, rej)
		return
	}
	// The query goes upstream as sent, so it must be sendable: net/http
	// lets raw non-ASCII bytes through, which Dial refuses (ErrBadURL).
	// That is the client's doing; left to the dial, it was blamed on every
	// upstream in turn (passive health) and answered 502.
	if !sendableQuery(r.URL.RawQuery) {
		g.refuse(w, r, rs.cfg.Name, http.StatusBadRequest, "query string must be ASCII: percent-encode other bytes")
		return
	}
	if req.Origin != "" && !rs.cfg.Settings.OriginAllowed(req.Origin) {
		g.refuse(w, r, rs.cfg.Name, http.StatusForbidden, "origin not allowed")
		return
	}

	// Limits, in the documented order. The client address is the one the logs
	// and X-Forwarded-For carry; limits key IPv6 by its /64.
	client := clientAddr(r, snap.cfg.Server.TrustedProxies)
	key := ratelimit.Key(client)
	rl := rs.limits
	if g.clusterRefuses(w, r, rs.cfg.Name) {
		return
	}
	if rl.handshakes != nil {
		if ok, retry := g.allowHandshake(r.Context(), rs, key); !ok {
			rl.hits.handshakes.Inc()
			g.refuse(w, r, rs.cfg.Name, http.StatusTooManyRequests, "too many handshakes from this address",
				"Retry-After", retryAfter(retry))
			return
		}
	}
	au, ok := g.authenticate(w, r, rs, client, &req.Protocols)
	if !ok {
		return
	}
	if !g.acquireConn(r.Context(), rs, key) {
		rl.hits.conns.Inc()
		g.refuse(w, r, rs.cfg.Name, http.StatusTooManyRequests, "too many connections from this address")
		return
	}
	if g.draining.Load() {
		g.releaseConn(rs, key)
		g.refuse(w, r, rs.cfg.Name, http.StatusServiceUnavailable, "gateway is shutting down",
			"Retry-After", "5", "Connection", "close")
		return
	}
	if n := g.slots.Add(1); snap.cfg.Server.MaxConnections > 0 && n > int64(snap.cfg.Server.MaxConnections) {
		g.slots.Add(-1)
		g.releaseConn(rs, key)
		g.refuse(w, r, rs.cfg.Name, http.StatusServiceUnavailable, "gateway at max_connections",
			"Retry-After", "1")
		return
	}
	// release gives back what this handshake holds; once the session runs,
	// the session's end does it.
	release := func() {
		g.slots.Add(-1)
		g.releaseConn(rs, key)
	}

	stuck := ""
	if rs.sticky != nil {
		stuck = rs.stuckValue(r)
	}
	sid := newSessionID()
	// The upstream knows sid from here on: the sessions API waits for it.
	g.reg.expect(sid)
	offer := deflateOffer(rs.cfg.Settings.PermessageDeflate, req) // deflate.go
	up, b, err := g.dialUpstream(r, rs, req, client, stuck, sid, offer)
	if err != nil {
		g.reg.settle(sid)
		release()
		g.upstreamFailed(w, r, rs.cfg.Name, err)
		return
	}
	ext, dfl := negotiated(offer, up) // deflate.go
	conn, br, err := handshake.UpgradeDeflate(w, req, up.Protocol, ext, cookies(up.Header, rs.stickyCookie(b, stuck, r.TLS != nil)))
	if err != nil {
		g.reg.settle(sid)
		release()
		up.Conn.Close()
		b.Release()
		g.log.Warn().Err(err).Str("route", rs.cfg.Name).Str("client", client.String()).Msg("upgrade failed")
		return
	}

	conn = listen.Upgraded(conn) // the wrapper's work ends at the hijack
	s := relay.New(&rs.session)
	s.Hooks = g.hooks.Load()
	s.Route, s.Client, s.Upstream, s.Protocol = rs.cfg.Name, client.String(), b.Key, up.Protocol
	s.SetLifetime(lifetimeOf(rs.cfg.Settings.MaxSessionLifetime))
	s.User = au.user
	s.SetExpiry(au.expires)
	s.Attach(conn, br, up.Conn, up.Reader, g.poll)
	s.SetLimits(rl.forSession(key))
	s.ID = sid
	if ext != nil {
		s.Compression = compressionName(*ext)
		s.SetDeflate(dfl)
	}
	access := snap.cfg.Log.Access
	s.OnEnd = func() {
		e := g.reg.remove(s)
		if g.cluster != nil {
			g.cluster.DirRemove(sessionID(s.ID).String())
		}
		g.metrics.SessionEnded(s)
		// Log before the session stops counting as open, so that anyone
		// who waits for the gateway to be idle finds every access line
		// written.
		if access {
			g.accessLog(s)
		}
		g.sessionEnded(e)
		g.active.Add(-1)
		b.Release()
		release()
	}
	g.active.Add(1)
	tags := g.sessionTags(s, up.Header)
	g.reg.add(s, tags, g.sessionStarted(s, rs, tags))
	if g.cluster != nil {
		g.cluster.DirAdd(sessionID(s.ID).String())
	}
	g.metrics.SessionStarted(s)
	// A reload or admin drain that swept the registry while this handshake
	// was in flight could not see this session: hold it to the config in
	// force now. (Registering first, then checking, leaves no gap.)
	if g.stale(s) {
		go s.Drain()
	}
	s.Run()
}

// dialUpstream handshakes with the route's upstreams in the pool's order, at
// most maxAttempts of them. A non-101 answer or a bad 101 ends the attempt at
// once (it is the upstream's answer, not a failure to reach it). On success
// the returned backend has been Acquired; the caller Releases it.
func (g *Gateway) dialUpstream(r *http.Request, rs *routeState, req handshake.Request, client netip.Addr, stuck string, sid sessionID, offer *handshake.DeflateOffer) (*handshake.Upstream, *balance.Backend, error) {
	server := &g.snap.Load().cfg.Server
	hdr := upstreamHeader(r, rs.cfg, server.TrustedProxies)
	setSessionHeader(hdr, server.SessionIDHeader, sid)
	protos := req.Protocols
	if len(rs.cfg.Subprotocols) > 0 {
		protos = nil
		for _, p := range req.Protocols {
			if slices.Contains(rs.cfg.Subprotocols, p) {
				protos = append(protos, p)
			}
		}
	}
	reqPath := route.CleanPath(r.URL.Path)
	if rs.cfg.StripPrefix {
		reqPath = route.StripPrefix(reqPath, rs.cfg.Path)
	}
	var cands [maxAttempts]*balance.Backend
	list := rs.candidates(cands[:0], stuck, client, time.Now())
	if len(list) == 0 {
		return nil, nil, errAllDrained
	}
	var lastErr error
	for _, b := range list {
		u := rs.configOf[b]
		target, d := rs.targetURL(u)
		target.Path = route.JoinPath(target.Path, reqPath)
		target.RawPath = ""
		if r.URL.RawQuery != "" || target.RawQuery == "" {
			target.RawQuery = r.URL.RawQuery
		}
		// Counted from the start of the dial (Backend.Acquire), so that a
		// burst of handshakes under least_conn does not all pick the
		// upstream that was least loaded before any of them was counted.
		b.Acquire()
		ctx, cancel := context.WithTimeout(r.Context(), rs.cfg.Settings.UpstreamDialTimeout)
		t0 := time.Now()
		up, err := d.DialDeflate(ctx, target, hdr, protos, offer)
		cancel()
		g.metrics.Dial.WithLabelValues(rs.cfg.Name).Observe(time.Since(t0).Seconds())
		if err == nil {
			rs.pool.Succeeded(b)
			return up, b, nil
		}
		b.Release()
		lastErr = err
		var se *handshake.StatusError
		if errors.As(err, &se) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || isBadUpstreamAnswer(err) {
			return nil, b, err
		}
		if r.Context().Err() != nil {
			return nil, b, err
		}
		rs.pool.Failed(b, time.Now())
		g.log.Warn().Err(err).Str("route", rs.cfg.Name).Str("upstream", b.Key).Msg("upstream dial failed")
	}
	return nil, nil, lastErr
}

// errAllDrained: every upstream of the route is out of the rotation by an
// admin drain (POST /drain?upstream=), until the next reload. Upstreams
// that are merely backing off after failures are still tried.
var errAllDrained = errors.New("every upstream of this route is drained")

// sendableQuery reports whether a query can go on the upstream's request
// line: visible ASCII only (RFC 3986 §3.4).
func sendableQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if q[i] <= ' ' || q[i] >= 0x7f {
			return false
		}
	}
	return true
}

func isBadUpstreamAnswer(err error) bool { return badUpstreamAnswer(err) != nil }

// badUpstreamAnswer returns the handshake sentinel err wraps when the
// upstream answered but its answer was unusable, or nil. The sentinel is
// found with errors.Is: Dial may wrap two causes at once (the context's
// error and the sentinel), where errors.Unwrap returns nil.
func badUpstreamAnswer(err error) error {
	for _, e := range []error{handshake.ErrBadAccept, handshake.ErrBadUpgrade, handshake.ErrBadProtocol,
		handshake.ErrBadExtension, handshake.ErrBadResponse, handshake.ErrResponseTooLarge} {
		if errors.Is(err, e) {
			return e
		}
	}
	return nil
}

// targetURL returns the URL to dial for u and the dialer to use.
func (rs *routeState) targetURL(u *config.Upstream) (*url.URL, *handshake.Dialer) {
	if u.Builtin != "" {
		return &url.URL{Scheme: "ws", Host: "builtin." + u.Builtin}, rs.echo
	}
	t := *u.URL
	return &t, rs.dialer
}

// upstreamFailed answers the client after the upstream handshake failed
// (docs/handshake.md "Upstream outcomes").
func (g *Gateway) upstreamFailed(w http.ResponseWriter, r *http.Request, route string, err error) {
	var se *handshake.StatusError
	switch {
	case errors.As(err, &se):
		h := w.Header()
		for _, k := range []string{"Www-Authenticate", "Retry-After", "Location", "Set-Cookie", "Content-Type"} {
			for _, v := range se.Header.Values(k) {
				h.Add(k, v)
			}
		}
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "text/plain; charset=utf-8")
		}
		h.Set("Content-Length", strconv.Itoa(len(se.Body)))
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(se.StatusCode)
		_, _ = w.Write(se.Body)
		g.logReject(r, route, se.StatusCode, "upstream answered "+strconv.Itoa(se.StatusCode))
	case listen.OutOfFDs(err):
		// The rejection line below is the documented one per handshake; the
		// condition itself is logged at most once per fdLogEvery.
		g.gate.DialOutOfFDs(route, err)
		g.reject(w, r, route, &handshake.Rejection{Status: http.StatusServiceUnavailable,
			Reason: "gateway out of file descriptors", Header: http.Header{"Retry-After": {"1"}}})
	case errors.Is(err, errAllDrained):
		// Taken out on purpose, not failing: 503, as while draining.
		g.reject(w, r, route, &handshake.Rejection{Status: http.StatusServiceUnavailable,
			Reason: errAllDrained.Error(), Header: http.Header{"Retry-After": {"5"}}})
	case isTimeout(err) || errors.Is(err, context.DeadlineExceeded):
		g.reject(w, r, route, &handshake.Rejection{Status: http.StatusGatewayTimeout, Reason: "upstream timed out"})
	default:
		reason := "upstream unavailable"
		if bad := badUpstreamAnswer(err); bad != nil {
			reason = "bad upstream handshake: " + strings.TrimPrefix(bad.Error(), "handshake: ")
		}
		g.log.Warn().Err(err).Str("route", route).Msg("upstream handshake failed")
		g.reject(w, r, route, &handshake.Rejection{Status: http.StatusBadGateway, Reason: reason})
	}
}

// refuse answers a rejection decided by the gateway itself (route, Origin,
// limits), with kv as header name/value pairs. It is not inlined: ServeHTTP's
// stack frame lives as long as the handshake, and each rejection's header
// map and Rejection would take room in it.
//
//go:noinline
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, route string, status int, reason string, kv ...string) {
	rej := &handshake.Rejection{Status: status, Reason: reason}
	if len(kv) > 0 {
		rej.Header = make(http.Header, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			rej.Header[kv[i]] = append(rej.Header[kv[i]], kv[i+1])
		}
	}
	g.reject(w, r, route, rej)
}

// cookies is the upstream's Set-Cookie and the sticky cookie (balance:
// cookie; "" for none), to go on the client's 101, or nil. Not inlined, for
// the same reason as refuse.
//
//go:noinline
func cookies(h http.Header, sticky string) http.Header {
	sc := h.Values("Set-Cookie")
	if sticky != "" {
		sc = append(sc[:len(sc):len(sc)], sticky)
	}
	if len(sc) > 0 {
		return http.Header{"Set-Cookie": sc}
	}
	return nil
}

// setSticky (re)builds the sticky cookie values of a balance: cookie route
// for its pool's backends.
func (rs *routeState) setSticky() {
	if rs.cfg.Balance == config.Cookie {
		rs.sticky = balance.NewSticky(stickySecret(rs.cfg), rs.pool.Backends())
	}
}

func (g *Gateway) reject(w http.ResponseWriter, r *http.Request, route string, rej *handshake.Rejection) {
	handshake.WriteRejection(w, rej)
	g.logReject(r, route, rej.Status, rej.Reason)
}

func (g *Gateway) logReject(r *http.Request, route string, status int, reason string) {
	g.metrics.Rejected.WithLabelValues(route, strconv.Itoa(status)).Inc()
	// "client" is the client address as the access log has it (behind a
	// trusted proxy, not the proxy's); "peer" is the TCP peer.
	client := clientAddr(r, g.snap.Load().cfg.Server.TrustedProxies)
	g.log.Info().Str("event", "rejected").Str("route", route).Str("client", client.String()).Str("peer", r.RemoteAddr).
		Str("host", r.Host).Str("path", r.URL.Path).Int("status", status).Str("reason", reason).Msg("handshake rejected")
}

func (g *Gateway) accessLog(s *relay.Session) {
	cf, cm, cb := s.Tally(relay.SideClient)
	uf, um, ub := s.Tally(relay.SideUpstream)
	e := g.log.Info().Str("event", "session").Str("session", sessionID(s.ID).String()).Str("route", s.Route).Str("client", s.Client).
		Str("upstream", s.Upstream).Str("subprotocol", s.Protocol).Str("compression", s.Compression).Str("user", s.User).
		Time("start", s.Start()).Float64("duration", time.Since(s.Start()).Seconds()).
		Int64("c2u_frames", cf).Int64("c2u_messages", cm).Int64("c2u_bytes", cb).
		Int64("u2c_frames", uf).Int64("u2c_messages", um).Int64("u2c_bytes", ub)
	closeFields(e, "client", s, relay.SideClient)
	closeFields(e, "upstream", s, relay.SideUpstream)
	closedBy, why, truncated := s.Outcome()
	e = e.Str("closed_by", closedBy).Str("reason", why).Bool("truncated", truncated).Int64("pushed", s.Pushed())
	e.Msg("session closed")
}

// closeFields logs the Close frame a leg received from the gateway:
// code "none" when it got none.
func closeFields(e *zerolog.Event, name string, s *relay.Session, side relay.Side) {
	if code, reason, ok := s.CloseSent(side); ok {
		e.Str(name+"_close_code", strconv.Itoa(int(code))).Str(name+"_close_reason", reason)
	} else {
		e.Str(name+"_close_code", "none")
	}
}

// Sessions returns the number of open sessions.
func (g *Gateway) Sessions() int { return int(g.active.Load()) }

var _ http.Handler = (*Gateway)(nil)

// stale reports whether s's route or upstream has left the config in force,
// or its upstream was drained.
func (g *Gateway) stale(s *relay.Session) bool {
	rs := g.snap.Load().route(s.Route)
	if rs == nil {
		return true
	}
	b := rs.backend(s.Upstream)
	return b == nil || b.Drained()
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// listenerRejected logs and counts a connection the listener refused before
// any route was matched (route=""): 408, 429, or net/http's own answers.
func (g *Gateway) listenerRejected(client netip.Addr, peer string, status int, reason string) {
	g.metrics.Rejected.WithLabelValues("", strconv.Itoa(status)).Inc()
	cl := ""
	if client.IsValid() {
		cl = client.String()
	}
	g.log.Info().Str("event", "rejected").Str("route", "").Str("client", cl).
		Str("peer", peer).Int("status", status).Str("reason", reason).
		Msg("handshake rejected")
}

// metricRoutes is what /metrics reports of the config in force: its routes
// and whether each upstream is in rotation.
func (g *Gateway) metricRoutes(now time.Time) []metrics.Route {
	snap := g.snap.Load()
	out := make([]metrics.Route, 0, len(snap.routes))
	for _, rs := range snap.routes {
		r := metrics.Route{Name: rs.cfg.Name}
		for _, b := range rs.pool.Backends() {
			r.Upstreams = append(r.Upstreams, metrics.Upstream{Key: b.Key, Up: b.Up(now)})
		}
		out = append(out, r)
	}
	return out
}

// policyOf is the pool policy of a route's `balance`.
func policyOf(b config.Balance) balance.Balance {
	switch b {
	case config.LeastConn:
		return balance.LeastConn
	case config.IPHash:
		return balance.IPHash
	case config.Cookie:
		return balance.Cookie
	}
	return balance.RoundRobin
}

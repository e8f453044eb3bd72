package proxy

// HTTP traffic on a route (README "Putting wsgate in front of an
// application"): with `http: proxy`, a request that is not a WebSocket
// upgrade is proxied to the route's upstreams by httputil.ReverseProxy,
// with the upgrade path's header rules, pool, passive health and sticky
// cookie.
//
// One ReverseProxy and one http.Transport per route and config snapshot.
// The Transport's RoundTrip is ours (routeTransport): it picks the upstream
// from the pool for each request, so the pool decides for HTTP requests as
// for upgrades, and it retries the next upstream only when the request
// could not be sent at all (the dial failed).

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"wsgate/handshake"
	"wsgate/internal/balance"
	"wsgate/internal/config"
	"wsgate/internal/listen"
	"wsgate/internal/route"
	"wsgate/ratelimit"
)

// Pool sizes of a route's Transport: idle connections kept for reuse, per
// upstream and in all (the rest are closed after use), and how long one
// may sit idle.
const (
	httpIdlePerUpstream = 64
	httpIdleTotal       = 256
	httpIdleTimeout     = 90 * time.Second
	// httpMaxResponseHeader bounds an upstream's response head.
	httpMaxResponseHeader = 64 << 10
)

// httpProxy is a route's HTTP proxy.
type httpProxy struct {
	rp        *httputil.ReverseProxy
	transport *http.Transport
}

// newHTTPProxy builds rs's HTTP proxy; tlsCfg is the route's upstream_tls.
func newHTTPProxy(rs *routeState, tlsCfg *tls.Config) *httpProxy {
	set := rs.cfg.Settings
	dialer := &net.Dialer{Timeout: set.UpstreamDialTimeout, KeepAlive: 30 * time.Second}
	up := tlsCfg.Clone()
	up.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		TLSClientConfig:        up,
		TLSHandshakeTimeout:    set.UpstreamDialTimeout,
		MaxIdleConns:           httpIdleTotal,
		MaxIdleConnsPerHost:    httpIdlePerUpstream,
		IdleConnTimeout:        httpIdleTimeout,
		ResponseHeaderTimeout:  set.HTTPResponseTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: httpMaxResponseHeader,
		// Bodies pass as they are: no Accept-Encoding of the gateway's own,
		// no transparent decompression.
		DisableCompression: true,
	}
	p := &httpProxy{transport: tr}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        rewriteHTTP,
		Transport:      &routeTransport{rs: rs, base: tr},
		ModifyResponse: modifyHTTPResponse,
		ErrorHandler:   httpProxyError,
		// Errors reach the access line (httpRequest.err); the rest of
		// what ReverseProxy would log is noise at the edge (clients that
		// go away mid-response).
		ErrorLog: log.New(io.Discard, "", 0),
	}
	return p
}

// httpKey is the context key of a proxied request's *httpRequest.
type httpKey struct{}

// httpRequest is one proxied request's state, from ServeHTTP through
// Rewrite, RoundTrip, ModifyResponse and the error handler to the access
// line.
type httpRequest struct {
	rs      *routeState
	in      *http.Request
	client  netip.Addr
	proxies []netip.Prefix
	stuck   string          // the valid sticky cookie value the client sent, or ""
	user    string          // who authenticated (auth), "" if nobody
	streams context.Context // Gateway.streams

	stop    context.CancelFunc // ends the request (an event stream, at shutdown)
	backend *balance.Backend   // the upstream that answered; nil if none did
	status  int                // the gateway's own answer (error handler), or 0
	err     error              // why the gateway answered itself, or why the body broke
}

func requestOf(r *http.Request) *httpRequest {
	st, _ := r.Context().Value(httpKey{}).(*httpRequest)
	return st
}

// serveHTTP proxies a request that is not an upgrade on an `http: proxy`
// route: rate_limit.requests, the body cap, then the upstream.
func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request, snap *snapshot, rs *routeState) {
	start := time.Now()
	listen.Served(r.Context())
	client := clientAddr(r, snap.cfg.Server.TrustedProxies)
	st := &httpRequest{rs: rs, in: r, client: client, proxies: snap.cfg.Server.TrustedProxies, streams: g.streams}
	sw := &statusWriter{ResponseWriter: w}
	in := &countingBody{}
	defer func() {
		// Also when ReverseProxy aborts the response (it panics with
		// http.ErrAbortHandler when the upstream's body breaks).
		g.httpDone(st, sw, in, start)
	}()

	if lim := rs.limits.requests; lim != nil {
		if ok, retry := lim.AllowN(ratelimit.Key(client), start, 1); !ok {
			rs.limits.hits.requests.Inc()
			g.httpRefuse(sw, st, http.StatusTooManyRequests, "too many requests from this address",
				http.Header{"Retry-After": {retryAfter(retry)}})
			return
		}
	}
	if !g.authenticateHTTP(sw, r, st) {
		return
	}
	if g.draining.Load() {
		g.httpRefuse(sw, st, http.StatusServiceUnavailable, "gateway is shutting down",
			http.Header{"Retry-After": {"5"}, "Connection": {"close"}})
		return
	}
	if !sendableQuery(r.URL.RawQuery) {
		g.httpRefuse(sw, st, http.StatusBadRequest, "query string must be ASCII: percent-encode other bytes", nil)
		return
	}
	if max := int64(rs.cfg.Settings.MaxRequestBodyBytes); max > 0 {
		if r.ContentLength > max {
			// Refused before a byte of the body is read: with
			// "Expect: 100-continue" the client never sends it.
			g.httpRefuse(sw, st, http.StatusRequestEntityTooLarge, "request body larger than max_request_body_bytes",
				http.Header{"Connection": {"close"}})
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			// The server's own ResponseWriter: past the cap, it also
			// closes the connection after the answer.
			r.Body = http.MaxBytesReader(w, r.Body, max)
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		in.rc = r.Body
		r.Body = in
	}
	if rs.sticky != nil {
		st.stuck = rs.stuckValue(r)
	}
	ctx, cancel := context.WithCancel(context.WithValue(r.Context(), httpKey{}, st))
	defer cancel()
	st.stop = cancel
	rs.http.rp.ServeHTTP(sw, r.WithContext(ctx))
}

// httpRefuse answers a request the gateway refuses itself.
func (g *Gateway) httpRefuse(w http.ResponseWriter, st *httpRequest, status int, reason string, h http.Header) {
	st.status, st.err = status, errors.New(reason)
	handshake.WriteRejection(w, &handshake.Rejection{Status: status, Reason: reason, Header: h})
}

// httpDone writes the request's access line and metrics.
func (g *Gateway) httpDone(st *httpRequest, sw *statusWriter, in *countingBody, start time.Time) {
	d := time.Since(start)
	status := sw.status
	if status == 0 {
		if st.status != 0 {
			status = st.status
		} else {
			// Nothing was written: the client went away first, or the
			// response was aborted (nginx logs 499 for the first).
			status = 499
		}
	}
	name := st.rs.cfg.Name
	code := strconv.Itoa(status)
	g.metrics.HTTPRequests.WithLabelValues(name, code).Inc()
	g.metrics.HTTPSeconds.WithLabelValues(name).Observe(d.Seconds())
	if !g.snap.Load().cfg.Log.Access {
		return
	}
	upstream := ""
	if st.backend != nil {
		upstream = st.backend.Key
	}
	e := g.log.Info().Str("event", "http").Str("route", name).Str("client", st.client.String()).
		Str("method", st.in.Method).Str("path", st.in.URL.Path).Str("proto", st.in.Proto).Int("status", status).
		Int64("bytes_in", in.n.Load()).Int64("bytes_out", sw.n).Str("upstream", upstream).Str("user", st.user).
		Float64("duration", d.Seconds())
	if st.err != nil {
		e = e.Str("error", st.err.Error())
	}
	e.Msg("http request")
}

// stuckValue is the client's sticky cookie value if it names an upstream of
// the route, else "".
func (rs *routeState) stuckValue(r *http.Request) string {
	for _, c := range r.CookiesNamed(rs.cfg.StickyCookie) {
		if rs.sticky.Lookup(c.Value) != nil {
			return c.Value
		}
	}
	return ""
}

// candidates is the order in which one request (an upgrade or not) tries
// the route's upstreams, at most maxAttempts of them: with balance: cookie
// the upstream named by the client's cookie (stuck) first, while it is in
// the rotation (up, not drained; a reload that removed it made the value
// unknown); then the pool's order.
func (rs *routeState) candidates(dst []*balance.Backend, stuck string, client netip.Addr, now time.Time) []*balance.Backend {
	if stuck != "" {
		if b := rs.sticky.Lookup(stuck); b != nil && b.Up(now) {
			dst = append(dst, b)
		}
	}
	var buf [maxAttempts]*balance.Backend
	for _, b := range rs.pool.Candidates(buf[:0], client.String(), now, maxAttempts) {
		if len(dst) < maxAttempts && !slices.Contains(dst, b) {
			dst = append(dst, b)
		}
	}
	return dst
}

// stickyCookie is the Set-Cookie value that keeps a client on b, or "" when
// the client already holds it (or the route is not balance: cookie).
func (rs *routeState) stickyCookie(b *balance.Backend, stuck string, overTLS bool) string {
	if rs.sticky == nil {
		return ""
	}
	v := rs.sticky.Value(b)
	if v == "" || v == stuck {
		return ""
	}
	c := rs.cfg.StickyCookie + "=" + v + "; Path=/; HttpOnly; SameSite=Lax"
	if overTLS {
		c += "; Secure"
	}
	return c
}

// rewriteHTTP builds the upstream request: the upgrade path's header rules
// (docs/handshake.md "Header forwarding": hop-by-hop headers dropped,
// X-Forwarded-*/Forwarded set, those of untrusted peers dropped,
// set_headers), and the path after strip_prefix with the query kept. The
// upstream's address is RoundTrip's to choose.
func rewriteHTTP(pr *httputil.ProxyRequest) {
	st := requestOf(pr.In)
	h := upstreamHeader(pr.In, st.rs.cfg, st.proxies)
	if pr.Out.Header.Get("Te") == "trailers" {
		h.Set("Te", "trailers") // ReverseProxy keeps this one hop-by-hop header
	}
	if _, ok := pr.In.Header["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // no Go default User-Agent of our own
	}
	pr.Out.Header = h
	p := route.CleanPath(pr.In.URL.Path)
	if st.rs.cfg.StripPrefix {
		p = route.StripPrefix(p, st.rs.cfg.Path)
	}
	pr.Out.URL.Path, pr.Out.URL.RawPath = p, ""
	pr.Out.Host = ""
}

// modifyHTTPResponse sets the sticky cookie on the upstream's answer and
// counts its body.
func modifyHTTPResponse(resp *http.Response) error {
	st := requestOf(resp.Request)
	if st == nil || st.backend == nil {
		return nil
	}
	if c := st.rs.stickyCookie(st.backend, st.stuck, st.in.TLS != nil); c != "" {
		resp.Header.Add("Set-Cookie", c)
	}
	// An event stream lasts until one side ends it: a shutdown ends it at
	// once (EventSource clients reconnect by themselves), where other
	// requests in flight get shutdown_grace to finish.
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		stopAt := context.AfterFunc(st.streams, st.stop)
		resp.Body = &stopOnClose{ReadCloser: resp.Body, stop: stopAt}
	}
	return nil
}

// stopOnClose unregisters an event stream's shutdown hook when it ends.
type stopOnClose struct {
	io.ReadCloser
	stop func() bool
}

func (s *stopOnClose) Close() error {
	s.stop()
	return s.ReadCloser.Close()
}

// httpProxyError answers a request whose upstream could not answer: the
// upgrade table's statuses (docs/handshake.md "Upstream outcomes").
func httpProxyError(w http.ResponseWriter, r *http.Request, err error) {
	st := requestOf(r)
	status, reason, h := http.StatusBadGateway, "upstream unavailable", http.Header(nil)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		status, reason, h = http.StatusRequestEntityTooLarge, "request body larger than max_request_body_bytes", http.Header{"Connection": {"close"}}
	case errors.Is(err, errAllDrained):
		status, reason, h = http.StatusServiceUnavailable, errAllDrained.Error(), http.Header{"Retry-After": {"5"}}
	case listen.OutOfFDs(err):
		status, reason, h = http.StatusServiceUnavailable, "gateway out of file descriptors", http.Header{"Retry-After": {"1"}}
	case r.Context().Err() != nil:
		// The client went away: nobody reads this answer.
		status, reason = 499, "client closed the request"
	case isTimeout(err) || errors.Is(err, context.DeadlineExceeded):
		status, reason = http.StatusGatewayTimeout, "upstream timed out"
	}
	if st != nil {
		st.status, st.err = status, err
	}
	if status == 499 {
		return
	}
	handshake.WriteRejection(w, &handshake.Rejection{Status: status, Reason: reason, Header: h})
}

// dialError marks a failure to connect to an upstream: nothing of the
// request was sent, so the next upstream may be tried.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// routeTransport sends a proxied request to the route's upstreams in the
// pool's order (candidates).
type routeTransport struct {
	rs   *routeState
	base *http.Transport
}

func (t *routeTransport) RoundTrip(out *http.Request) (*http.Response, error) {
	st := requestOf(out)
	rs := t.rs
	var buf [maxAttempts]*balance.Backend
	list := rs.candidates(buf[:0], st.stuck, st.client, time.Now())
	if len(list) == 0 {
		return nil, errAllDrained
	}
	// The Transport closes a request's body when a round trip fails; a
	// retry needs it open, and may only happen if none of it was read.
	var body *retryBody
	if out.Body != nil && out.Body != http.NoBody {
		body = &retryBody{rc: out.Body}
		defer body.closeUnlessHandedOn()
	}
	var lastErr error
	for _, b := range list {
		u := *rs.configOf[b].URL
		if u.Scheme == "wss" {
			u.Scheme = "https"
		} else {
			u.Scheme = "http"
		}
		u.Path, u.RawPath = route.JoinPath(u.Path, out.URL.Path), ""
		u.RawQuery = out.URL.RawQuery
		req := *out
		req.URL, req.Host = &u, ""
		if body != nil {
			req.Body = body
		}
		b.Acquire()
		resp, err := t.base.RoundTrip(&req)
		if err == nil {
			rs.pool.Succeeded(b)
			st.backend = b
			if body != nil {
				body.handedOn = true
			}
			resp.Body = &upstreamBody{rc: resp.Body, b: b, st: st}
			return resp, nil
		}
		b.Release()
		lastErr = err
		if out.Context().Err() != nil {
			return nil, err
		}
		var de *dialError
		dialFailed := errors.As(err, &de)
		if dialFailed || isTimeout(err) {
			// Passive health, shared with upgrades: an upstream that
			// cannot be reached or does not answer in time backs off.
			rs.pool.Failed(b, time.Now())
		}
		if !dialFailed || (body != nil && body.read.Load()) {
			return nil, err
		}
	}
	return nil, lastErr
}

// retryBody is a request body that survives failed round trips: Close does
// nothing until the body is handed on to a response (or given up on).
type retryBody struct {
	rc       io.ReadCloser
	read     atomic.Bool // some of it was read
	handedOn bool
}

func (b *retryBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 || err != nil {
		b.read.Store(true)
	}
	return n, err
}

func (b *retryBody) Close() error { return nil }

func (b *retryBody) closeUnlessHandedOn() {
	if !b.handedOn {
		b.rc.Close()
	}
}

// upstreamBody is an upstream's response body: it notes why it broke, if it
// did, and releases the upstream (least_conn) when ReverseProxy closes it.
type upstreamBody struct {
	rc   io.ReadCloser
	b    *balance.Backend
	st   *httpRequest
	once sync.Once
}

func (u *upstreamBody) Read(p []byte) (int, error) {
	n, err := u.rc.Read(p)
	if err != nil && err != io.EOF && u.st.err == nil {
		u.st.err = err
	}
	return n, err
}

func (u *upstreamBody) Close() error {
	u.once.Do(u.b.Release)
	return u.rc.Close()
}

// countingBody counts the request body bytes read from the client.
type countingBody struct {
	rc io.ReadCloser
	n  atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingBody) Close() error { return c.rc.Close() }

// statusWriter records the status and the body bytes of the answer. It
// unwraps for http.ResponseController, which ReverseProxy flushes through.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush is for callers that assert http.Flusher rather than use a
// ResponseController.
func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

// closeIdle drops the idle upstream connections of a snapshot's routes that
// a reload replaced (requests in flight keep theirs).
func (s *snapshot) closeIdle() {
	for _, rs := range s.routes {
		if rs.http != nil {
			rs.http.transport.CloseIdleConnections()
		}
	}
}

// stickySecret is the MAC key of a route's sticky cookie values: derived
// from the route's name, so that every instance with the same config, and
// the same instance after a restart, gives the same values.
func stickySecret(r *config.Route) []byte {
	sum := sha256.Sum256([]byte("wsgate sticky_cookie v1\x00" + r.Name))
	return sum[:]
}

var (
	_ http.RoundTripper = (*routeTransport)(nil)
	_ http.Flusher      = (*statusWriter)(nil)
)

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"wsgate/internal/certs"
	"wsgate/internal/listen"
	"wsgate/internal/relay"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// zerologWriter turns net/http's error log (TLS handshake failures, accept
// errors) into warn lines.
type zerologWriter struct{ log zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	w.log.Warn().Str("event", "http_error").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Listeners are the sockets a gateway serves. Run opens them from the config;
// tests may pass their own.
type Listeners struct {
	Plain net.Listener // server.listen
	TLS   net.Listener // server.tls_listen (TCP; TLS is layered by Serve)
	Admin net.Listener // server.admin_listen
}

// Close closes every listener.
func (ls *Listeners) Close() {
	for _, l := range []net.Listener{ls.Plain, ls.TLS, ls.Admin} {
		if l != nil {
			l.Close()
		}
	}
}

// Listen opens the listeners the config asks for.
func (g *Gateway) Listen() (*Listeners, error) {
	cfg := g.Config()
	ls := &Listeners{}
	for _, l := range []struct {
		addr string
		ln   *net.Listener
	}{{cfg.Server.Listen, &ls.Plain}, {cfg.Server.TLSListen, &ls.TLS}, {cfg.Server.AdminListen, &ls.Admin}} {
		if l.addr == "" {
			continue
		}
		// No TCP keepalive on accepted connections: the gateway's pings
		// (ping_interval) find a dead client, and Go's default keepalive
		// costs four setsockopt calls per connection (docs/relay.md
		// "Keepalive pings and pong_timeout").
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err := lc.Listen(context.Background(), "tcp", l.addr)
		if err != nil {
			ls.Close()
			return nil, err
		}
		*l.ln = ln
	}
	return ls, nil
}

// Serve serves ls until ctx is done, then shuts down gracefully (docs/
// "Graceful shutdown") and returns.
func (g *Gateway) Serve(ctx context.Context, ls *Listeners) error {
	defer g.poll.Close() // after the shutdown: no session is left to park
	defer g.leaveCluster()
	g.clusterAPI = g.startClusterSessions()
	defer g.clusterAPI.close()
	defer func() { g.snap.Load().closeIdle() }()
	cfg := g.Config()
	var servers []*http.Server
	// One slot per server: only the first error is received, and a
	// second or third server failing must not block its goroutine forever.
	errc := make(chan error, 3)
	errLog := log.New(zerologWriter{g.log}, "", 0)
	// Requests on the WebSocket listeners that began before the drain: a
	// handshake among them may still become a session, which the drain
	// must wait for and close too.
	var inflight atomic.Int64
	start := func(ln net.Listener, h http.Handler, ws bool, tlsCfg *tls.Config) {
		if ws {
			h = g.counted(h, &inflight)
		}
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: cfg.Server.HandshakeTimeout,
			MaxHeaderBytes:    int(cfg.Server.MaxHeaderBytes),
			ErrorLog:          errLog,
			TLSConfig:         tlsCfg,
		}
		if ws {
			// RFC 6455's handshake is an HTTP/1.1 Upgrade. The TLS
			// listener also speaks HTTP/2 for the requests of http: proxy
			// routes (README "Putting wsgate in front of an
			// application"); its server does not advertise extended
			// CONNECT (RFC 8441; Go's default unless GODEBUG=http2xconnect=1),
			// so browsers open their WebSocket connections over HTTP/1.1.
			// The plain listener offers no h2c.
			var p http.Protocols
			p.SetHTTP1(true)
			p.SetHTTP2(tlsCfg != nil)
			srv.Protocols = &p
			// PROXY protocol, handshake_timeout, max_pending_per_ip and an
			// exact max_header_bytes (listener.go).
			ln = g.gate.Wrap(ln, cfg.Server, tlsCfg != nil)
			srv.ConnState = listen.ConnState
			srv.ConnContext = listen.ConnContext
			// A backstop only: the listener closes a late request
			// silently at handshake_timeout, where net/http's own timeout
			// would answer a partial request line with a 400 first.
			srv.ReadHeaderTimeout = cfg.Server.HandshakeTimeout + time.Second
			srv.MaxHeaderBytes = listen.HTTPMaxHeaderBytes(cfg.Server.MaxHeaderBytes)
		} else {
			// Out of descriptors, the admin listener backs off too, with
			// one log line per fdLogEvery instead of net/http's one per
			// retry.
			ln = g.gate.Paced(ln)
		}
		servers = append(servers, srv)
		go func() {
			var err error
			if tlsCfg != nil {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	var acme *certs.ACME
	if ls.TLS != nil {
		static, err := certs.LoadStatic(cfg.TLS.Certificates)
		if err != nil {
			return err
		}
		g.tls.certs.Store(static)
		if cfg.TLS.ACME != nil {
			var plainAddr net.Addr
			if ls.Plain != nil {
				plainAddr = ls.Plain.Addr()
			}
			acme, err = certs.NewACMEStorage(cfg.TLS.ACME, g.certStorage(), plainAddr, ls.TLS.Addr(), g.tls.challenges, g.log)
			if err != nil {
				return err
			}
			g.tls.acme.Store(acme)
			defer func() {
				g.tls.acme.Store(nil)
				acme.Stop()
			}()
		}
		start(ls.TLS, g, true, g.tlsConfig(cfg))
		g.log.Info().Str("listen", ls.TLS.Addr().String()).Msg("listening (wss://)")
	}
	if ls.Plain != nil {
		var h http.Handler = g
		if ls.TLS != nil {
			h = g.plainHandler(ls.TLS.Addr().String())
		}
		if acme != nil {
			h = acme.HTTPHandler(h)
		}
		start(ls.Plain, h, true, nil)
		g.log.Info().Str("listen", ls.Plain.Addr().String()).Msg("listening (ws://)")
	}
	if acme != nil {
		// After the listeners serve, so certmagic finds their ports taken.
		// Before the admin listener, so /readyz knows from its first
		// answer which certificates are in storage.
		acme.Manage(certs.Hosts(cfg, g.tls.certs.Load()))
	}
	trimCtx, stopTrim := context.WithCancel(context.Background())
	defer stopTrim()
	go relay.Trim(trimCtx, g.poll)
	// The admin server starts last: once /readyz answers, the plain and
	// TLS servers are already serving.
	if ls.Admin != nil {
		g.warnOpenAdmin(ls.Admin)
		start(ls.Admin, g.adminHandler(), false, nil)
		g.log.Info().Str("listen", ls.Admin.Addr().String()).Msg("admin listening")
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// docs/relay.md "Graceful shutdown": the listeners stay open through the drain,
	// new handshakes are answered 503 with Connection: close (ServeHTTP),
	// /readyz says 503, and no connection is kept alive for another
	// request.
	for _, s := range servers {
		s.SetKeepAlivesEnabled(false)
	}
	g.shutdown(context.Background(), &inflight)
	g.closeEvents(eventsWait) // the disconnect events of the sessions just closed
	// Only now are the listeners closed. Requests still being answered
	// (a 503, a /readyz) get a moment; sessions are not http.Server's to
	// wait for (their connections were hijacked) and are over by now.
	sctx, cancel := context.WithTimeout(context.Background(), serverCloseWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			_ = s.Shutdown(sctx)
			s.Close()
		})
	}
	wg.Wait()
	return err
}

// After shutdown_grace, how long the cut sessions get to unwind, and how
// long requests still being answered get once the listeners close. Both
// together stay well inside the documented shutdown_grace + 2 s for the exit.
const (
	cutWait         = 500 * time.Millisecond
	serverCloseWait = 500 * time.Millisecond
	eventsWait      = 500 * time.Millisecond
)

// counted wraps a WebSocket listener's handler so that the drain knows
// which requests began before it. n is raised before draining is looked
// at, and the drain sets draining before it reads n, so no request slips
// between the two. A request that sees draining is not counted: ServeHTTP
// refuses it, and a storm of refusals must not hold the drain open.
func (g *Gateway) counted(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if g.draining.Load() {
			n.Add(-1)
		} else {
			defer n.Add(-1)
		}
		h.ServeHTTP(w, r)
	})
}

// Shutdown drains the gateway (docs/relay.md "Graceful shutdown"): new handshakes
// get 503, every session is sent shutdown_close_code (client) and 1001
// (upstream), spread over close_spread, and Shutdown waits for their close
// handshakes up to shutdown_grace. Sessions still open then are cut: both
// TCP connections are closed under them. Serve calls it when its context
// is done.
func (g *Gateway) Shutdown(ctx context.Context) { g.shutdown(ctx, nil) }

// shutdown is Shutdown; inflight, if not nil, counts the requests that
// began before the drain (see counted). A handshake among them becomes a
// session after the first sweep of the registry: it is closed as soon as
// it appears, and the drain waits for it.
func (g *Gateway) shutdown(ctx context.Context, inflight *atomic.Int64) {
	begun := time.Now()
	g.draining.Store(true)
	g.stopStreams()
	cfg := g.Config()
	busy := func() bool { return g.active.Load() > 0 || (inflight != nil && inflight.Load() > 0) }
	sessions := g.reg.list()
	closing := make(map[*relay.Session]bool, len(sessions))
	for _, s := range sessions {
		closing[s] = true
	}
	g.log.Info().Int("sessions", len(sessions)).Dur("close_spread", cfg.Server.CloseSpread).
		Dur("shutdown_grace", cfg.Server.ShutdownGrace).Msg("shutting down")
	g.spreadClose(sessions, (*relay.Session).Shutdown)
	grace := time.NewTimer(cfg.Server.ShutdownGrace)
	defer grace.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for busy() {
		select {
		case <-ctx.Done():
			return
		case <-grace.C:
			break wait
		case <-tick.C:
		}
		for _, s := range g.reg.list() {
			if !closing[s] {
				closing[s] = true
				// Not spread: it is one of few, and late already.
				go s.Shutdown()
			}
		}
	}
	if !busy() {
		g.log.Info().Dur("took", time.Since(begun)).Msg("every session closed")
		return
	}
	// shutdown_grace is over: whoever has not finished the close
	// handshake is cut.
	left := g.reg.list()
	for _, s := range left {
		s.Cut()
	}
	g.log.Warn().Int("sessions", len(left)).Msg("shutdown_grace over: cutting the sessions still open")
	end := time.Now().Add(cutWait)
	for g.active.Load() > 0 && time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/drain", g.drainHandler)
	g.sessionsAPI(mux)
	mux.Handle("/metrics", promhttp.HandlerFor(g.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if g.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("draining\n"))
			return
		}
		// Hosts waiting for their first ACME certificate are listed but
		// do not hold readiness back: a readiness gate in front of the
		// gateway would keep the CA's challenge from ever arriving.
		var lines []string
		ready := true
		if m := g.tls.acme.Load(); m != nil {
			lines, ready = m.Status()
		}
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: certificates in storage are still loading\n"))
		} else {
			_, _ = w.Write([]byte("ready\n"))
		}
		for _, l := range lines {
			_, _ = w.Write([]byte(l + "\n"))
		}
	})
	return g.adminAuth(mux)
}

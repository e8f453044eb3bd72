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
	"time"

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
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			ls.Close()
			return nil, err
		}
		*l.ln = ln
	}
	return ls, nil
}

// Serve serves ls until ctx is done, then shuts down gracefully (SPEC
// "Graceful shutdown") and returns.
func (g *Gateway) Serve(ctx context.Context, ls *Listeners) error {
	cfg := g.Config()
	var servers []*http.Server
	// One slot per server: only the first error is received, and a
	// second or third server failing must not block its goroutine forever.
	errc := make(chan error, 3)
	errLog := log.New(zerologWriter{g.log}, "", 0)
	start := func(ln net.Listener, h http.Handler, ws bool, tlsCfg *tls.Config) {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: cfg.Server.HandshakeTimeout,
			MaxHeaderBytes:    int(cfg.Server.MaxHeaderBytes),
			ErrorLog:          errLog,
			TLSConfig:         tlsCfg,
		}
		if ws {
			// The WebSocket listener speaks HTTP/1.1 only: RFC 6455's
			// handshake is an HTTP/1.1 Upgrade.
			var p http.Protocols
			p.SetHTTP1(true)
			srv.Protocols = &p
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
	var acme *acmeManager
	if ls.TLS != nil {
		certs, err := loadCertificates(cfg.TLS.Certificates)
		if err != nil {
			return err
		}
		g.tls.certs.Store(certs)
		if cfg.TLS.ACME != nil {
			var plainAddr net.Addr
			if ls.Plain != nil {
				plainAddr = ls.Plain.Addr()
			}
			acme, err = newACMEManager(cfg.TLS.ACME, plainAddr, ls.TLS.Addr(), g.tls.challenges, g.log)
			if err != nil {
				return err
			}
			g.tls.acme.Store(acme)
			defer func() {
				g.tls.acme.Store(nil)
				acme.stop()
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
			h = acme.httpHandler(h)
		}
		start(ls.Plain, h, true, nil)
		g.log.Info().Str("listen", ls.Plain.Addr().String()).Msg("listening (ws://)")
	}
	if acme != nil {
		// After the listeners serve, so certmagic finds their ports taken.
		// Before the admin listener, so /readyz knows from its first
		// answer which certificates are in storage.
		acme.manage(acmeHosts(cfg, g.tls.certs.Load()))
	}
	// The admin server starts last: once /readyz answers, the plain and
	// TLS servers are already serving.
	if ls.Admin != nil {
		start(ls.Admin, g.adminHandler(), false, nil)
		g.log.Info().Str("listen", ls.Admin.Addr().String()).Msg("admin listening")
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	g.Shutdown(context.Background())
	for _, s := range servers {
		s.Close()
	}
	return err
}

// Shutdown drains the gateway: new handshakes get 503, every session is sent
// shutdown_close_code (client) and 1001 (upstream), spread over close_spread,
// and Shutdown waits for them up to shutdown_grace.
func (g *Gateway) Shutdown(ctx context.Context) {
	g.draining.Store(true)
	cfg := g.Config()
	sessions := g.reg.list()
	g.log.Info().Int("sessions", len(sessions)).Msg("shutting down")
	deadline := time.Now().Add(cfg.Server.ShutdownGrace)
	spread := cfg.Server.CloseSpread
	for i, s := range sessions {
		if len(sessions) > 1 && spread > 0 {
			at := time.Duration(int64(spread) * int64(i) / int64(len(sessions)))
			time.AfterFunc(at, func() { s.apply(evShutdown, "gateway") })
		} else {
			s.apply(evShutdown, "gateway")
		}
	}
	for g.active.Load() > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/drain", g.drainHandler)
	mux.Handle("/metrics", promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}))
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
			lines, ready = m.status()
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
	return mux
}

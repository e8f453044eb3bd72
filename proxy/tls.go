package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"

	"wsgate/handshake"
	"wsgate/internal/certs"
	"wsgate/internal/config"
)

// tlsState is what the TLS listener serves; swapped whole on reload.
type tlsState struct {
	certs atomic.Pointer[certs.Set]
	acme  atomic.Pointer[certs.ACME] // nil without tls.acme, or outside Serve
	// challenges turns ACME challenge types off; set before Serve (tests).
	challenges certs.Challenges
}

// tlsConfig builds the TLS listener's config: static certificates by SNI,
// then ACME-managed ones; ALPN h2 (for HTTP requests on http: proxy
// routes) and http/1.1 (RFC 6455's handshake is an HTTP/1.1 Upgrade; RFC
// 8441's WebSockets over h2 is not offered in this version), plus
// "acme-tls/1" for TLS-ALPN-01 challenges with tls.acme.
func (g *Gateway) tlsConfig(cfg *config.Config) *tls.Config {
	minVersion := cfg.TLS.MinVersion.Version()
	protos := []string{"h2", "http/1.1"}
	if cfg.TLS.ACME != nil {
		protos = append(protos, certs.ALPNProto)
	}
	return &tls.Config{
		MinVersion: minVersion,
		NextProtos: protos,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			m := g.tls.acme.Load()
			if m != nil && certs.IsChallenge(hello) {
				return m.GetCertificate(hello)
			}
			if c := g.tls.certs.Load().ForHello(hello); c != nil {
				return c, nil
			}
			// certmagic sees only the names it manages: an unknown
			// server name must never lead to a request to the CA.
			if name := strings.ToLower(strings.TrimSuffix(hello.ServerName, ".")); m != nil && m.Manages(name) {
				return m.GetCertificate(hello)
			}
			return nil, fmt.Errorf("no certificate for server name %q", hello.ServerName)
		},
	}
}

// plainHandler serves the plain listener while TLS is on: WebSocket upgrades
// for routes with allow_plain go to the gateway, other upgrades get 403
// ("use wss://"), and every other request is redirected to https.
func (g *Gateway) plainHandler(tlsAddr string) http.Handler {
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isUpgrade(r) {
			// No route is a 404 as on any listener (docs/handshake.md "Order of
			// checks": the route check comes first); a route without allow_plain gets 403.
			snap := g.snap.Load()
			i, ok := snap.router.Match(r.Host, r.URL.Path)
			if !ok || snap.routes[i].cfg.AllowPlain {
				g.ServeHTTP(w, r)
				return
			}
			g.reject(w, r, snap.routes[i].cfg.Name, &handshake.Rejection{Status: http.StatusForbidden, Reason: "use wss://"})
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		// An IPv6 literal without a port ("[::1]") keeps its brackets
		// through SplitHostPort's failure; take them off before putting
		// them back once.
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if host == "" {
			// HTTP/1.0 without Host: send the client back to the address
			// it reached.
			if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
				host, _, _ = net.SplitHostPort(a.String())
			}
		}
		if tlsPort != "" && tlsPort != "443" {
			host = net.JoinHostPort(host, tlsPort)
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "websocket") {
				return true
			}
		}
	}
	return false
}

// reloadACME brings the managed names in line with a reloaded config
// (SIGHUP): hosts of new routes are loaded or obtained, hosts no route has
// any more are dropped. Reload calls it once the new static certificates
// are in place, since they decide which names ACME must cover. A changed
// tls.acme block itself (CA, account, storage) needs a restart.
func (g *Gateway) reloadACME(cfg *config.Config) {
	m := g.tls.acme.Load()
	if m == nil {
		if cfg.TLS.ACME != nil && g.tlsOn() {
			g.log.Warn().Msg("reload: tls.acme was added; it takes effect only after a restart")
		}
		return
	}
	if cfg.TLS.ACME == nil || *cfg.TLS.ACME != m.Config() {
		g.log.Warn().Msg("reload: tls.acme changed; the running CA, account and storage stay until a restart")
	}
	m.Manage(certs.Hosts(cfg, g.tls.certs.Load()))
}

// stop ends certmagic's retries, renewals and maintenance.

package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"

	"wsgate/handshake"
	"wsgate/internal/config"
)

// certSet is the static certificates of a config, looked up by SNI name.
type certSet struct {
	exact map[string]*tls.Certificate
	wild  map[string]*tls.Certificate // by the suffix after "*."
	first *tls.Certificate            // for clients that send no SNI
}

// loadCertificates reads tls.certificates. SIGHUP calls it again, so renewed
// files take effect without a restart.
func loadCertificates(files []config.CertFile) (*certSet, error) {
	cs := &certSet{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	for _, f := range files {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", f.Cert, err)
		}
		cert := &c
		if cs.first == nil {
			cs.first = cert
		}
		names := f.DNSNames
		if len(names) == 0 && c.Leaf != nil {
			names = c.Leaf.DNSNames
		}
		for _, n := range names {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if suffix, ok := strings.CutPrefix(n, "*."); ok {
				if _, dup := cs.wild[suffix]; !dup {
					cs.wild[suffix] = cert
				}
			} else if _, dup := cs.exact[n]; !dup {
				cs.exact[n] = cert
			}
		}
		if c.Leaf != nil {
			for _, ip := range c.Leaf.IPAddresses {
				if _, dup := cs.exact[ip.String()]; !dup {
					cs.exact[ip.String()] = cert
				}
			}
		}
	}
	return cs, nil
}

// get returns the certificate for an SNI name: an exact name first, then a
// wildcard covering exactly one label in front of its suffix (RFC 6125 §6.4.3).
func (cs *certSet) get(name string) *tls.Certificate {
	if cs == nil {
		return nil
	}
	if name == "" {
		return cs.first
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if c := cs.exact[name]; c != nil {
		return c
	}
	if _, suffix, ok := strings.Cut(name, "."); ok {
		return cs.wild[suffix]
	}
	return nil
}

// forHello returns the certificate for a ClientHello. A client that dialled
// an IP address sends no SNI (RFC 6066 §3 allows no IP literals in it); it
// gets the certificate for the address it reached, if one covers it, else
// the first one.
func (cs *certSet) forHello(hello *tls.ClientHelloInfo) *tls.Certificate {
	if cs == nil {
		return nil
	}
	if hello.ServerName == "" && hello.Conn != nil {
		if ap, err := netip.ParseAddrPort(hello.Conn.LocalAddr().String()); err == nil {
			if c := cs.exact[ap.Addr().Unmap().WithZone("").String()]; c != nil {
				return c
			}
		}
	}
	return cs.get(hello.ServerName)
}

// tlsState is what the TLS listener serves; swapped whole on reload.
type tlsState struct {
	certs atomic.Pointer[certSet]
	acme  atomic.Pointer[acmeManager] // nil without tls.acme, or outside Serve
	// challenges turns ACME challenge types off; set before Serve (tests).
	challenges acmeChallenges
}

// tlsConfig builds the TLS listener's config: static certificates by SNI,
// then ACME-managed ones; HTTP/1.1 only (RFC 6455's handshake is an
// HTTP/1.1 Upgrade; RFC 8441's WebSockets over h2 is not offered in this
// version), plus "acme-tls/1" for TLS-ALPN-01 challenges with tls.acme.
func (g *Gateway) tlsConfig(cfg *config.Config) *tls.Config {
	minVersion := uint16(tls.VersionTLS12)
	if cfg.TLS.MinVersion == "1.3" {
		minVersion = tls.VersionTLS13
	}
	protos := []string{"http/1.1"}
	if cfg.TLS.ACME != nil {
		protos = append(protos, acmeTLS1)
	}
	return &tls.Config{
		MinVersion: minVersion,
		NextProtos: protos,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			m := g.tls.acme.Load()
			if m != nil && isACMEChallenge(hello) {
				return m.magic.GetCertificate(hello)
			}
			if c := g.tls.certs.Load().forHello(hello); c != nil {
				return c, nil
			}
			// certmagic sees only the names it manages: an unknown
			// server name must never lead to a request to the CA.
			if name := strings.ToLower(strings.TrimSuffix(hello.ServerName, ".")); m != nil && m.manages(name) {
				return m.magic.GetCertificate(hello)
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
			// No route is a 404 as on any listener (SPEC: the route check
			// comes first); a route without allow_plain gets 403.
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

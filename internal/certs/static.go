package certs

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"strings"
	"wsgate/internal/config"
)

// Set is the static certificates of a config, looked up by SNI name.
type Set struct {
	exact map[string]*tls.Certificate
	wild  map[string]*tls.Certificate // by the suffix after "*."
	first *tls.Certificate            // for clients that send no SNI
}

// LoadStatic reads tls.certificates. SIGHUP calls it again, so renewed
// files take effect without a restart.
func LoadStatic(files []config.CertFile) (*Set, error) {
	cs := &Set{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
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
func (cs *Set) Get(name string) *tls.Certificate {
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
func (cs *Set) ForHello(hello *tls.ClientHelloInfo) *tls.Certificate {
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
	return cs.Get(hello.ServerName)
}

package config

// The tls: and log: blocks.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"wsgate/internal/config/yamlwalk"

	"gopkg.in/yaml.v3"
)

// ---------------------------------------------------------------------------
// tls and log

func (p *parser) tlsBlock(v yamlwalk.Val, t *TLSConfig) {
	p.Accept(v)
	p.certsOK = true
	for _, f := range p.Fields(v, tlsKeys) {
		switch f.Name {
		case "acme":
			p.Accept(f.V)
			t.ACME = p.acme(f.V)
		case "certificates":
			for _, item := range p.Items(f.V) {
				if c, ok := p.certificate(item); ok {
					t.Certificates = append(t.Certificates, c)
				} else {
					p.certsOK = false
				}
			}
		case "min_version":
			if s, ok := p.Str(f.V); ok {
				if s != "1.2" && s != "1.3" {
					p.Errf(f.V.Line, f.V.Key, "%q is not supported: use \"1.2\" or \"1.3\"", yamlwalk.Clip(s))
					continue
				}
				t.MinVersion = TLSVersion(s)
			}
		}
	}
}

func (p *parser) acme(v yamlwalk.Val) *ACMEConfig {
	a := &ACMEConfig{CA: DefaultACMECA, Storage: DefaultACMEStorage}
	fields := p.Fields(v, acmeKeys)
	if n := yamlwalk.Deref(v.N); n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for _, f := range fields {
		switch f.Name {
		case "email":
			if s, ok := p.Str(f.V); ok {
				if !validEmail(s) {
					p.Errf(f.V.Line, f.V.Key, "%q is not an email address", yamlwalk.Clip(s))
				}
				a.Email = s
			}
		case "ca":
			if s, ok := p.Str(f.V); ok {
				if err := checkACMECA(s); err != nil {
					p.Errf(f.V.Line, f.V.Key, "%v", err)
				}
				a.CA = s
			}
		case "ca_root":
			if s, ok := p.Str(f.V); ok && s != "" {
				if err := checkPEMCerts(s); err != nil {
					p.Errf(f.V.Line, f.V.Key, "%v", err)
				}
				a.CARoot = s
			}
		case "agree_terms":
			if b, ok := p.Bool(f.V); ok {
				a.AgreeTerms = b
			}
		case "storage":
			if s, ok := p.Str(f.V); ok {
				if s == "" {
					p.Errf(f.V.Line, f.V.Key, "must not be empty")
				}
				a.Storage = s
			}
		}
	}
	if !a.AgreeTerms {
		key := yamlwalk.Join(v.Key, "agree_terms")
		p.Errf(p.firstLine(key, v.Key), key, "must be true: set it to agree to the ACME CA's terms of service (wsgate never agrees for you)")
	}
	if _, ok := p.Lines[yamlwalk.Join(v.Key, "email")]; !ok {
		p.Errf(v.Line, yamlwalk.Join(v.Key, "email"), "required: the ACME CA sends expiry and account notices there")
	}
	return a
}

func validEmail(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && local != "" && domain != "" && !strings.ContainsAny(s, " \t\r\n<>,;") && !strings.Contains(domain, "@")
}

// checkACMECA accepts an https directory URL, or http for a CA on this
// machine (test CAs such as pebble).
func checkACMECA(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bad ACME directory URL %q: want https://host/path", yamlwalk.Clip(s))
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("ACME directory URL %q must use https (http is allowed only for localhost test CAs)", yamlwalk.Clip(s))
		}
	default:
		return fmt.Errorf("bad ACME directory URL %q: want https://host/path", yamlwalk.Clip(s))
	}
	return nil
}

func (p *parser) certificate(v yamlwalk.Val) (CertFile, bool) {
	var c CertFile
	if n := yamlwalk.Deref(v.N); n == nil || n.Kind != yaml.MappingNode {
		p.Errf(v.Line, v.Key, "want a mapping {cert: FILE, key: FILE}, got %s", yamlwalk.Describe(v.N))
		return c, false
	}
	ok := true
	for _, f := range p.Fields(v, certKeys) {
		switch f.Name {
		case "cert":
			c.Cert, _ = p.Str(f.V)
		case "key":
			c.Key, _ = p.Str(f.V)
		}
	}
	for _, k := range []struct{ name, val string }{{"cert", c.Cert}, {"key", c.Key}} {
		if k.val == "" {
			p.Errf(v.Line, yamlwalk.Join(v.Key, k.name), "required: a PEM file")
			ok = false
		}
	}
	if !ok {
		return c, false
	}
	certPEM, err := readSmallFile(c.Cert)
	if err != nil {
		p.Errf(p.firstLine(yamlwalk.Join(v.Key, "cert")), yamlwalk.Join(v.Key, "cert"), "%v", err)
		return c, false
	}
	keyPEM, err := readSmallFile(c.Key)
	if err != nil {
		p.Errf(p.firstLine(yamlwalk.Join(v.Key, "key")), yamlwalk.Join(v.Key, "key"), "%v", err)
		return c, false
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		p.Errf(v.Line, v.Key, "cannot load %s and %s as a certificate and key: %v", c.Cert, c.Key, err)
		return c, false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		p.Errf(v.Line, v.Key, "cannot parse certificate %s: %v", c.Cert, err)
		return c, false
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		p.Warnf(v.Line, v.Key, "certificate %s expired on %s", c.Cert, leaf.NotAfter.Format(time.DateOnly))
	} else if now.Before(leaf.NotBefore) {
		p.Warnf(v.Line, v.Key, "certificate %s is not valid before %s", c.Cert, leaf.NotBefore.Format(time.DateOnly))
	}
	info := certInfo{}
	for _, n := range leaf.DNSNames {
		n = strings.ToLower(n)
		c.DNSNames = append(c.DNSNames, n)
		info.names = append(info.names, n)
	}
	for _, ip := range leaf.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			info.ips = append(info.ips, a.Unmap())
		}
	}
	if len(info.names) == 0 && len(info.ips) == 0 {
		p.Warnf(v.Line, v.Key, "certificate %s names no host (no subject alternative names)", c.Cert)
	}
	p.certs = append(p.certs, info)
	return c, true
}

// maxPEMFile bounds what the validator reads: certificates and CA bundles
// are small, and a path like /dev/zero must not hang a reload.
const maxPEMFile = 4 << 20

func readSmallFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: %v", path, pe.Err)
		}
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > maxPEMFile {
		return nil, fmt.Errorf("%s: too large for a PEM file (%s)", path, Size(fi.Size()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, errors.Unwrap(err))
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxPEMFile))
}

// checkPEMCerts checks that a file holds at least one PEM certificate.
func checkPEMCerts(path string) error {
	b, err := readSmallFile(path)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return fmt.Errorf("%s: no PEM certificate in the file", path)
	}
	return nil
}

func (p *parser) logBlock(v yamlwalk.Val, l *LogConfig) {
	p.Accept(v)
	for _, f := range p.Fields(v, logKeys) {
		switch f.Name {
		case "level":
			if s, ok := p.OneOf(f.V, "debug", "info", "warn", "error"); ok {
				l.Level = s
			}
		case "format":
			if s, ok := p.OneOf(f.V, "json", "console"); ok {
				l.Format = s
			}
		case "access":
			if b, ok := p.Bool(f.V); ok {
				l.Access = b
			}
		}
	}
}

func (p *parser) checkTLS(cfg *Config) {
	t := &cfg.TLS
	if !cfg.TLSEnabled() {
		if _, ok := p.Lines["tls"]; ok && (t.ACME != nil || len(t.Certificates) > 0) {
			p.Warnf(p.Lines["tls"], "tls", "server.tls_listen is not set: TLS is off and this block is unused")
		}
		for _, r := range cfg.Routes {
			if r.AllowPlain {
				key := r.key + ".allow_plain"
				p.Warnf(p.Lines[key], key, "has no effect without TLS (server.tls_listen): plain ws:// is all there is")
			}
		}
		return
	}
	tlsLine := p.firstLine("server.tls_listen")
	if t.ACME == nil && len(t.Certificates) == 0 {
		if p.certsOK || p.Lines["tls"] == 0 {
			p.Errf(tlsLine, "server.tls_listen", "TLS is on but there is no certificate: add tls.certificates or tls.acme")
		}
		return
	}
	if t.ACME != nil && cfg.Server.Listen == "" {
		p.Warnf(p.Lines["tls.acme"], "tls.acme", "server.listen is off: only TLS-ALPN-01 challenges can be answered, and plain requests are not redirected to https")
	}
	if !p.certsOK {
		return // coverage would only repeat the certificate errors
	}
	exact := 0
	for _, r := range cfg.Routes {
		if r.Host == "" || strings.HasPrefix(r.Host, "invalid:") {
			continue
		}
		key := r.key + ".host"
		line := p.firstLine(key)
		covered := p.covered(r.Host)
		switch {
		case strings.HasPrefix(r.Host, "*."):
			if !covered {
				p.Errf(line, key, "wildcard host %q needs a static certificate for %q in tls.certificates (ACME cannot issue wildcards over HTTP-01)", r.Host, r.Host)
			}
		case covered:
		case t.ACME != nil:
			if _, err := netip.ParseAddr(r.Host); err == nil {
				p.Warnf(line, key, "no static certificate covers the IP address %s, and ACME is not asked for IP certificates", r.Host)
			} else {
				exact++
			}
		default:
			p.Warnf(line, key, "no static certificate covers %q: TLS handshakes for it will fail", r.Host)
		}
	}
	if t.ACME != nil && exact == 0 {
		p.Warnf(p.Lines["tls.acme"], "tls.acme", "no route has an exact host that needs a certificate: ACME will not request any")
	}
}

// covered reports whether a loaded static certificate serves host. A
// wildcard certificate "*.example.com" covers "a.example.com" and the route
// host "*.example.com" itself.
func (p *parser) covered(host string) bool {
	addr, ipErr := netip.ParseAddr(host)
	for _, c := range p.certs {
		if ipErr == nil {
			if slices.Contains(c.ips, addr) {
				return true
			}
			continue
		}
		for _, n := range c.names {
			if n == host {
				return true
			}
			if strings.HasPrefix(n, "*.") && !strings.HasPrefix(host, "*.") {
				if _, rest, ok := strings.Cut(host, "."); ok && rest == n[2:] {
					return true
				}
			}
		}
	}
	return false
}

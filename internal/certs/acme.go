package certs

// Automatic HTTPS (docs/operations.md "Automatic HTTPS (ACME)"): certmagic obtains, renews and
// stores a certificate for every exact route host that no static
// certificate covers. The gateway keeps its own listeners: certmagic's
// challenge solvers are pointed at their ports (AltHTTPPort,
// AltTLSALPNPort) and find them in use, so certmagic never binds a socket;
// HTTP-01 is answered by the plain listener through the issuer's
// HTTPChallengeHandler, TLS-ALPN-01 by the TLS listener, whose
// GetCertificate hands "acme-tls/1" hellos to certmagic (RFC 8737 §3).
//
// There is no on-demand TLS: certmagic is only ever asked about names this
// package put on its list, so a handshake for any other server name never
// reaches the CA.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"wsgate/internal/config"

	"github.com/caddyserver/certmagic"
	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ALPNProto is the ALPN protocol of TLS-ALPN-01 challenge handshakes
// (RFC 8737 §6.2).
const ALPNProto = "acme-tls/1"

// Challenges turns challenge types off. Both are on in production (the
// CA picks); tests turn one off to prove the other.
type Challenges struct {
	NoHTTP01, NoTLSALPN01 bool
}

// ACME runs certmagic for one Serve of a gateway with tls.acme.
type ACME struct {
	cfg    config.ACMEConfig // as started; a reload cannot change it
	log    zerolog.Logger
	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
	ctx    context.Context // cancelled by stop: ends retries and renewals
	cancel context.CancelFunc

	// names is the set certmagic may serve, read on every handshake.
	names atomic.Pointer[map[string]bool]

	mu    sync.Mutex
	hosts map[string]*acmeHost // guarded by mu
}

// acmeHost is what /readyz reports about one managed name.
type acmeHost struct {
	// stored: a usable certificate was in storage when management began,
	// so readiness waits until it is loaded (docs/operations.md).
	stored  bool
	lastErr string // the CA's last error, until a certificate arrives
}

// NewACME builds certmagic's cache, config and ACME issuer for a,
// with challenges answered on the gateway's own listener ports.
func NewACME(a *config.ACMEConfig, plain, tlsLn net.Addr, ch Challenges, log zerolog.Logger) (*ACME, error) {
	return NewACMEStorage(a, nil, plain, tlsLn, ch, log)
}

// NewACMEStorage is NewACME keeping the account, certificates, locks and
// challenge data in st instead of the folder tls.acme.storage (nil): the
// cluster's Redis, shared by every instance.
func NewACMEStorage(a *config.ACMEConfig, st certmagic.Storage, plain, tlsLn net.Addr, ch Challenges, log zerolog.Logger) (*ACME, error) {
	if st == nil {
		st = &certmagic.FileStorage{Path: a.Storage}
	}
	m := &ACME{cfg: *a, log: log, hosts: map[string]*acmeHost{}}
	m.names.Store(&map[string]bool{})
	zl := zap.New(zerologCore{log: log.With().Str("component", "certmagic").Logger()})
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		Logger:           zl,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage: st,
		Logger:  zl,
		OnEvent: m.onEvent,
		// Every handshake would build a "tls_get_certificate" event.
		ShouldEmitFunc: func(event string) bool { return event != "tls_get_certificate" },
	})
	tmpl := certmagic.ACMEIssuer{
		CA:                      a.CA,
		Email:                   a.Email,
		Agreed:                  a.AgreeTerms, // always true: the config requires it
		DisableHTTPChallenge:    ch.NoHTTP01 || plain == nil,
		DisableTLSALPNChallenge: ch.NoTLSALPN01 || tlsLn == nil,
		Logger:                  zl,
	}
	if a.CARoot != "" {
		pem, err := os.ReadFile(a.CARoot)
		if err != nil {
			m.cache.Stop()
			return nil, fmt.Errorf("tls.acme.ca_root: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			m.cache.Stop()
			return nil, fmt.Errorf("tls.acme.ca_root %s: no PEM certificate", a.CARoot)
		}
		tmpl.TrustedRoots = pool
	}
	// certmagic's solvers try to bind ListenHost:port and, finding the
	// port taken, assume its owner answers challenges. That owner is us:
	// our listener's own host makes the conflict exact, so certmagic can
	// never open a socket of its own beside ours. With two hosts, ""
	// (every address) conflicts with both on Linux, and certmagic takes
	// "address already in use" as the same answer.
	var hosts []string
	if plain != nil {
		host, port := splitAddr(plain)
		tmpl.AltHTTPPort = port
		hosts = append(hosts, host)
	}
	if tlsLn != nil {
		host, port := splitAddr(tlsLn)
		tmpl.AltTLSALPNPort = port
		hosts = append(hosts, host)
	}
	if len(hosts) > 0 && (len(hosts) == 1 || hosts[0] == hosts[1]) {
		tmpl.ListenHost = hosts[0]
	}
	m.issuer = certmagic.NewACMEIssuer(m.magic, tmpl)
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

func splitAddr(a net.Addr) (string, int) {
	host, port, _ := net.SplitHostPort(a.String())
	p, _ := strconv.Atoi(port)
	return host, p
}

// Hosts are the names certmagic manages for cfg: every exact route host
// that is not an IP address and that no static certificate covers (static
// certificates win; wildcard hosts need DNS-01 and are never managed).
func Hosts(cfg *config.Config, static *Set) []string {
	var out []string
	for _, r := range cfg.Routes {
		h := r.Host
		if h == "" || strings.HasPrefix(h, "*.") || strings.HasPrefix(h, "invalid:") {
			continue
		}
		if _, err := netip.ParseAddr(h); err == nil {
			continue
		}
		if static.Get(h) != nil || slices.Contains(out, h) {
			continue
		}
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// manage makes hosts the managed set: new names are loaded from storage or
// obtained in the background (ManageAsync: the gateway serves while the CA
// is slow), names no longer configured are dropped from the cache.
func (m *ACME) Manage(hosts []string) {
	m.mu.Lock()
	var added []string
	for _, h := range hosts {
		if m.hosts[h] == nil {
			m.hosts[h] = &acmeHost{stored: m.usableInStorage(h)}
			added = append(added, h)
		}
	}
	var gone []certmagic.SubjectIssuer
	for h := range m.hosts {
		if !slices.Contains(hosts, h) {
			delete(m.hosts, h)
			gone = append(gone, certmagic.SubjectIssuer{Subject: h})
		}
	}
	names := make(map[string]bool, len(m.hosts))
	for h := range m.hosts {
		names[h] = true
	}
	m.names.Store(&names)
	m.mu.Unlock()

	if len(gone) > 0 {
		m.cache.RemoveManaged(gone)
	}
	if len(added) > 0 {
		m.log.Info().Strs("hosts", added).Str("ca", m.issuer.CA).Msg("acme: managing certificates")
		if err := m.magic.ManageAsync(m.ctx, added); err != nil {
			m.log.Warn().Err(err).Strs("hosts", added).Msg("acme: cannot manage certificates")
		}
	}
}

// usableInStorage reports whether storage holds what certmagic loads for
// host: a certificate and key that make a pair, and their metadata. Only
// those hold up readiness: a host whose stored files are broken waits for a
// new certificate like a new host.
func (m *ACME) usableInStorage(host string) bool {
	key := m.issuer.IssuerKey()
	load := func(k string) []byte {
		b, err := m.magic.Storage.Load(m.ctx, k)
		if err != nil {
			return nil
		}
		return b
	}
	certPEM := load(certmagic.StorageKeys.SiteCert(key, host))
	keyPEM := load(certmagic.StorageKeys.SitePrivateKey(key, host))
	meta := load(certmagic.StorageKeys.SiteMeta(key, host))
	if certPEM == nil && keyPEM == nil && meta == nil {
		return false
	}
	_, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil && !json.Valid(meta) {
		err = errors.New("metadata missing or not JSON")
	}
	if err != nil {
		m.log.Warn().Err(err).Str("host", host).Msg("acme: certificate in storage is unusable; a new one will be obtained")
		return false
	}
	return true
}

func (m *ACME) Stop() {
	m.cancel()
	m.cache.Stop()
}

// manages reports whether name (lower case) is a managed host.
func (m *ACME) Manages(name string) bool {
	return (*m.names.Load())[name]
}

// IsChallenge reports whether hello is a TLS-ALPN-01 validation
// handshake: RFC 8737 §3 has it offer "acme-tls/1" alone, with SNI.
func IsChallenge(hello *tls.ClientHelloInfo) bool {
	return hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ALPNProto
}

// status lists the managed hosts for /readyz; ready is false while a
// certificate that was in storage is not loaded yet.
func (m *ACME) Status() (lines []string, ready bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ready = true
	hosts := make([]string, 0, len(m.hosts))
	for h := range m.hosts {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		st := m.hosts[h]
		switch {
		case len(m.cache.AllMatchingCertificates(h)) > 0:
			lines = append(lines, "acme "+h+": certificate loaded")
		case st.stored:
			ready = false
			lines = append(lines, "acme "+h+": loading the certificate from storage")
		case st.lastErr != "":
			lines = append(lines, "acme "+h+": waiting for its first certificate (last error: "+st.lastErr+")")
		default:
			lines = append(lines, "acme "+h+": waiting for its first certificate")
		}
	}
	return lines, ready
}

// onEvent logs certmagic's issuance, renewal and failures (the zap bridge
// keeps certmagic's own lines at debug, so these are the ones operators
// see) and remembers the CA's last error per host for /readyz.
func (m *ACME) onEvent(_ context.Context, event string, data map[string]any) error {
	host, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtaining":
		m.log.Info().Str("event", "acme_obtaining").Str("host", host).Bool("renewal", renewal).
			Msg("acme: requesting a certificate")
	case "cert_obtained":
		issuer, _ := data["issuer"].(string)
		msg := "acme: certificate obtained"
		if renewal {
			msg = "acme: certificate renewed"
		}
		m.log.Info().Str("event", "acme_obtained").Str("host", host).Bool("renewal", renewal).
			Str("issuer", issuer).Msg(msg)
		m.setErr(host, "")
	case "cert_failed":
		err, _ := data["error"].(error)
		if err == nil {
			err = errors.New("unknown error")
		}
		m.log.Warn().Str("event", "acme_failed").Str("host", host).Bool("renewal", renewal).
			Err(err).Msg("acme: certificate request failed; certmagic retries with backoff")
		m.setErr(host, err.Error())
	case "cached_managed_cert":
		sans, _ := data["sans"].([]string)
		m.log.Info().Str("event", "acme_loaded").Strs("hosts", sans).Msg("acme: certificate loaded")
	case "cert_ocsp_revoked":
		m.log.Warn().Str("event", "acme_revoked").Str("host", host).Msg("acme: certificate revoked; renewing")
	}
	return nil
}

func (m *ACME) setErr(host, msg string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st := m.hosts[host]; st != nil {
		st.lastErr = msg
	}
}

// httpHandler wraps h, the plain listener's handler, so that it answers
// HTTP-01 challenges (RFC 8555 §8.3) before anything else.
func (m *ACME) HTTPHandler(h http.Handler) http.Handler {
	return m.issuer.HTTPChallengeHandler(h)
}

// zerologCore is a zap core writing to the gateway's zerolog logger.
// certmagic logs its routine steps at info; they go to debug here, while
// onEvent logs what an operator needs at info. Its errors are all retried,
// so they are warnings for the gateway.
type zerologCore struct {
	log    zerolog.Logger
	fields []zapcore.Field
}

func zerologLevel(l zapcore.Level) zerolog.Level {
	switch {
	case l >= zapcore.ErrorLevel, l == zapcore.WarnLevel:
		return zerolog.WarnLevel
	default:
		return zerolog.DebugLevel
	}
}

func (c zerologCore) Enabled(l zapcore.Level) bool {
	zl := zerologLevel(l)
	return zl >= c.log.GetLevel() && zl >= zerolog.GlobalLevel()
}

func (c zerologCore) With(fields []zapcore.Field) zapcore.Core {
	return zerologCore{log: c.log, fields: append(slices.Clip(c.fields), fields...)}
}

func (c zerologCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c zerologCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	ev := c.log.WithLevel(zerologLevel(e.Level))
	if !ev.Enabled() {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	if e.LoggerName != "" {
		ev = ev.Str("logger", e.LoggerName)
	}
	ev.Fields(enc.Fields).Msg(e.Message)
	return nil
}

func (zerologCore) Sync() error { return nil }

// Config is the tls.acme block the manager was started with.
func (m *ACME) Config() config.ACMEConfig { return m.cfg }

// GetCertificate answers a TLS handshake for a name the manager manages (or
// a TLS-ALPN-01 challenge).
func (m *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.magic.GetCertificate(hello)
}

// Issuer is the manager's ACME issuer (its CA and challenge settings).
func (m *ACME) Issuer() *certmagic.ACMEIssuer { return m.issuer }

// Magic is the manager's certmagic config (its storage and cache).
func (m *ACME) Magic() *certmagic.Config { return m.magic }

// Track adds host to what /readyz reports, as management of it would, and
// looks for a usable certificate in storage (tests put one there).
func (m *ACME) Track(host string) {
	stored := m.usableInStorage(host)
	m.mu.Lock()
	m.hosts[host] = &acmeHost{stored: stored}
	m.mu.Unlock()
}

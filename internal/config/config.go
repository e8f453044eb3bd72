package config

// The config model, its loader and its validator.
//
// The YAML is decoded into a yaml.Node tree and walked by hand rather than
// unmarshalled into structs: that is what lets every problem carry its file,
// line and dotted key, lets unknown keys be errors, and lets validation go on
// after the first problem so that `wsgate validate` prints all of them at once.
//
// Loading happens in three steps: walk the tree into typed values (reporting
// type and range errors where they sit), merge each route over `defaults` (a
// layer of "set" values, so a route overrides key by key), then check the
// contradictions between values and across routes.

import (
	"errors"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
	"wsgate/internal/config/yamlwalk"
)

// Built-in defaults that are not simply zero values.
const (
	DefaultListen             = ":8080"
	DefaultACMECA             = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultACMEStorage        = "./wsgate-data/certs"
	DefaultTLSMinVersion      = TLS12
	DefaultBalance            = RoundRobin
	DefaultOnExceed           = OnExceedClose
	DefaultHTTPMode           = HTTPReject
	DefaultStickyCookie       = "wsgate_sticky"
	minFrameBytes        Size = 125 // control frames carry up to 125 bytes (RFC 6455 §5.5)
)

// Config is a loaded and validated configuration. It is never modified after
// loading: a reload builds a new one.
type Config struct {
	Path     string
	Server   ServerConfig
	TLS      TLSConfig
	Log      LogConfig
	Cluster  ClusterConfig // cluster.go
	Defaults RouteSettings // the resolved `defaults` block
	Routes   []*Route      // in file order
	// AdminToken is the content of server.admin_token_file, read at load
	// ("" without one).
	AdminToken string
	// Warnings are odd-but-legal findings, "file:line: key: message", sorted by
	// line. `wsgate validate` prints them; the gateway logs them.
	Warnings []string
}

// ServerConfig is the `server` block. Changing it needs a restart.
type ServerConfig struct {
	Listen      string // plain listener; default ":8080"; "" = off
	TLSListen   string // "" = off
	AdminListen string // "" = off
	// TrustedProxies are the peers whose X-Forwarded-For / Forwarded headers are
	// believed. A bare IP in the config becomes a /32 or /128.
	TrustedProxies      []netip.Prefix
	ProxyProtocol       bool
	MaxConnections      int           // 0 = unlimited
	HandshakeTimeout    time.Duration // > 0
	MaxHeaderBytes      Size          // > 0
	MaxPendingPerIP     int           // 0 = unlimited
	UpstreamFailureCode uint16        // 1011 or 1014
	ShutdownGrace       time.Duration // > 0
	ShutdownCloseCode   uint16        // 1001 or 1012
	CloseSpread         time.Duration // >= 0 and < ShutdownGrace
	// The sessions API (README "Sessions API and events").
	SessionIDHeader string // sent upstream with the session id; "" = not sent
	AdminTokenFile  string // "" = the admin listener asks for no token (Config.AdminToken holds it)
}

// TLSConfig is the `tls` block. It only takes effect when
// Server.TLSListen is set.
type TLSConfig struct {
	ACME         *ACMEConfig // nil = no ACME
	Certificates []CertFile
	MinVersion   TLSVersion
}

// ACMEConfig is `tls.acme`. AgreeTerms is always true in a loaded config:
// the gateway never agrees to a CA's terms on the operator's behalf.
type ACMEConfig struct {
	Email      string
	CA         string // directory URL
	CARoot     string // PEM file trusted for the CA; "" = system roots
	AgreeTerms bool
	Storage    string
}

// CertFile is one static certificate. Both files were readable and formed a
// valid pair when the config was loaded; DNSNames are the leaf's SAN names.
type CertFile struct {
	Cert, Key string
	DNSNames  []string
}

// LogConfig is the `log` block.
type LogConfig struct {
	Level  string // debug | info | warn | error
	Format string // json | console
	Access bool
}

// RouteSettings are the per-route knobs. Config.Defaults holds the `defaults`
// block resolved over the built-in defaults; every Route.Settings is that with
// the route's own keys on top.
type RouteSettings struct {
	UpstreamDialTimeout time.Duration // > 0
	IdleTimeout         time.Duration // > 0
	PingInterval        time.Duration // 0 = no keepalive pings
	PongTimeout         time.Duration // > 0 whenever PingInterval > 0
	CloseTimeout        time.Duration // > 0
	WriteTimeout        time.Duration // > 0
	// MaxFrameBytes is the frame cap as configured (>= 125). A data frame larger
	// than MaxMessageBytes is refused by the message cap anyway; see
	// EffectiveMaxFrameBytes.
	MaxFrameBytes   Size
	MaxMessageBytes Size // > 0
	// Origins are normalised: lower case, default port dropped
	// ("https://app.example.com", "https://*.example.com", "http://localhost:3000").
	// Empty = any origin.
	Origins   []string
	RateLimit RateLimits
	// Events is where session start and end are POSTed; nil = nowhere.
	Events *Events
	// PermessageDeflate is the compression policy (deflate.go).
	PermessageDeflate Deflate
	// MaxRequestBodyBytes caps a proxied HTTP request's body (413).
	MaxRequestBodyBytes Size
	// HTTPResponseTimeout is how long a proxied HTTP request waits for the
	// upstream's response headers (504).
	HTTPResponseTimeout time.Duration
	// MaxSessionLifetime ends a session this old (±10 % jitter) with 1001
	// on both sides; 0 = unlimited (README "Running several instances").
	MaxSessionLifetime time.Duration
	// Auth is the `auth` block (README "Authentication").
	Auth *Auth // nil: no authentication
}

// EffectiveMaxFrameBytes is the largest frame that can pass: MaxFrameBytes,
// lowered to MaxMessageBytes for data frames but never below 125, so control
// frames always fit.
func (s *RouteSettings) EffectiveMaxFrameBytes() Size {
	m := s.MaxMessageBytes
	if m < minFrameBytes {
		m = minFrameBytes
	}
	return min(s.MaxFrameBytes, m)
}

// OriginAllowed reports whether an Origin header value is allowed. The check
// is an exact match on scheme, host and port after normalisation, or a
// wildcard "scheme://*.suffix" matching one or more labels before suffix.
func (s *RouteSettings) OriginAllowed(origin string) bool {
	if len(s.Origins) == 0 {
		return true
	}
	o, err := normalizeOrigin(origin, false)
	if err != nil {
		return false
	}
	scheme, hostport, _ := strings.Cut(o, "://")
	for _, a := range s.Origins {
		if a == o {
			return true
		}
		as, ahp, _ := strings.Cut(a, "://")
		if as != scheme || !strings.HasPrefix(ahp, "*.") {
			continue
		}
		suffix := ahp[1:] // ".example.com[:port]"
		if strings.HasSuffix(hostport, suffix) && len(hostport) > len(suffix) {
			return true
		}
	}
	return false
}

// RateLimits are a route's limits; a nil *Rate means no limit.
type RateLimits struct {
	Requests         *Rate // non-upgrade HTTP requests per client address, per route
	Handshakes       *Rate // per client address, per route
	ConnectionsPerIP int   // 0 = unlimited
	Messages         *Rate // per session, client -> upstream
	MessagesPerIP    *Rate // summed over the sessions of one address
	Bytes            *Rate // per session, client -> upstream; tokens are bytes
	Frames           *Rate // per session, every frame client -> upstream
	OnExceed         OnExceed
}

// Route is one entry of `routes`.
type Route struct {
	Name string
	// Host is "" (any host), an exact lower-case name or IP, or "*.suffix",
	// which matches one or more labels in front of suffix.
	Host         string
	Path         string // starts with "/"; default "/"
	StripPrefix  bool
	Upstreams    []Upstream
	Balance      Balance
	UpstreamTLS  UpstreamTLS
	Subprotocols []string
	// SetHeaders are sent toward the upstream, replacing any client value.
	// Keys are canonical (http.CanonicalHeaderKey).
	SetHeaders map[string]string
	AllowPlain bool
	// HTTP is what non-upgrade requests get (`http: proxy | reject`).
	HTTP HTTPMode
	// StickyCookie names the cookie of `balance: cookie`.
	StickyCookie string
	Settings     RouteSettings
	Line         int // line of the route in the file

	key string // "routes[i]", for messages
}

// Upstream is one backend of a route: a server named by a ws://, wss://,
// http:// or https:// URL (ws and http are the same server, as are wss and
// https), or a built-in.
type Upstream struct {
	URL     *url.URL // nil for a built-in; its scheme is always ws or wss
	Raw     string   // as written in the config; the identity used by drain and metrics
	Weight  int      // >= 1
	Builtin string   // "echo" for "builtin:echo"
}

// UpstreamTLS configures wss:// upstreams. CA is a PEM file; "" = system roots.
type UpstreamTLS struct {
	CA                 string
	ServerName         string
	InsecureSkipVerify bool
}

// RouteByName returns the route with that name, or nil.
func (c *Config) RouteByName(name string) *Route {
	for _, r := range c.Routes {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// TLSEnabled reports whether the TLS listener is on.
func (c *Config) TLSEnabled() bool { return c.Server.TLSListen != "" }

// Error is one problem in a config file: its file, line and dotted key.
type Error = yamlwalk.Error

// Errors is every problem found in a config file, sorted by line.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As find the individual *Error values.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Load reads and validates a config file. On failure the error is a
// Errors listing every problem found.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, Errors{{File: path, Msg: "cannot read config: " + err.Error()}}
	}
	return Parse(path, data)
}

// Parse parses and validates a config held in memory; path is used in
// messages only. Relative file names inside the config (certificates, CA
// files, ACME storage) are used as written, that is relative to the working
// directory of the process. Parse never panics, whatever data holds.
func Parse(path string, data []byte) (*Config, error) {
	p := &parser{Walker: yamlwalk.New(path, yamlwalk.NodeBudget)}
	p.Walker.Unknown = p.unknown
	root := p.Decode(data)
	if len(p.Errs) > 0 {
		// Not YAML: checking what could be read would only add noise.
		return p.finish(nil)
	}
	cfg := p.config(root)
	return p.finish(cfg)
}

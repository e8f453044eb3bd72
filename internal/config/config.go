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
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Built-in defaults that are not simply zero values.
const (
	DefaultListen             = ":8080"
	DefaultACMECA             = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultACMEStorage        = "./wsgate-data/certs"
	DefaultTLSMinVersion      = "1.2"
	DefaultBalance            = "round_robin"
	DefaultOnExceed           = "close"
	minFrameBytes        Size = 125 // control frames carry up to 125 bytes (RFC 6455 §5.5)
)

// Config is a loaded and validated configuration. It is never modified after
// loading: a reload builds a new one.
type Config struct {
	Path     string
	Server   ServerConfig
	TLS      TLSConfig
	Log      LogConfig
	Defaults RouteSettings // the resolved `defaults` block
	Routes   []*Route      // in file order
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
}

// TLSConfig is the `tls` block. It only takes effect when
// Server.TLSListen is set.
type TLSConfig struct {
	ACME         *ACMEConfig // nil = no ACME
	Certificates []CertFile
	MinVersion   string // "1.2" or "1.3"
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
	Handshakes       *Rate // per client address, per route
	ConnectionsPerIP int   // 0 = unlimited
	Messages         *Rate // per session, client -> upstream
	MessagesPerIP    *Rate // summed over the sessions of one address
	Bytes            *Rate // per session, client -> upstream; tokens are bytes
	Frames           *Rate // per session, every frame client -> upstream
	OnExceed         string
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
	Balance      string // round_robin | least_conn | ip_hash
	UpstreamTLS  UpstreamTLS
	Subprotocols []string
	// SetHeaders are sent toward the upstream, replacing any client value.
	// Keys are canonical (http.CanonicalHeaderKey).
	SetHeaders map[string]string
	AllowPlain bool
	Settings   RouteSettings
	Line       int // line of the route in the file

	key string // "routes[i]", for messages
}

// Upstream is one backend of a route: a ws:// or wss:// URL, or a built-in.
type Upstream struct {
	URL     *url.URL // nil for a built-in
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

// Error is one problem in a config file.
type Error struct {
	File string
	Line int    // 0 when the problem has no line (e.g. the file cannot be read)
	Key  string // dotted path, e.g. "routes[1].upstreams[0]"; "" for the document
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

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
	p := &parser{file: path, lines: map[string]int{}, budget: nodeBudget}
	root := p.decode(data)
	if len(p.errs) > 0 {
		// Not YAML: checking what could be read would only add noise.
		return p.finish(nil)
	}
	cfg := p.config(root)
	return p.finish(cfg)
}

// ---------------------------------------------------------------------------
// Decoding the YAML tree.

// nodeBudget caps the nodes the walk visits. Aliases are followed, so a small
// file could otherwise expand exponentially ("billion laughs").
const nodeBudget = 1_000_000

type parser struct {
	file      string
	errs      []*Error
	warns     []*Error
	lines     map[string]int // dotted key -> line, for every value accepted
	budget    int
	exhausted bool
	// errsAtExhaustion is len(errs) once the budget ran out.
	errsAtExhaustion int
	certs            []certInfo
	certsOK          bool // every certificate loaded (coverage checks are meaningful)
}

type certInfo struct {
	names []string
	ips   []netip.Addr
}

func (p *parser) errf(line int, key, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) warnf(line int, key, format string, args ...any) {
	p.warns = append(p.warns, &Error{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems start the messages of yaml.v3's parser (as opposed to
// its scanner). For those it reports the 0-based line of the enclosing block
// or of the problem (go-yaml/yaml#205), one less than the line to show.
var yamlParserProblems = []string{"did not find expected", "found duplicate %", "found incompatible YAML document", "found undefined tag handle"}

func (p *parser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		for _, prefix := range yamlParserProblems {
			if strings.HasPrefix(m[2], prefix) {
				line++
				break
			}
		}
		p.errf(line, "", "YAML syntax: %s", m[2])
		return
	}
	p.errf(0, "", "YAML syntax: %s", strings.TrimPrefix(msg, "yaml: "))
}

// decode parses the first YAML document; nil means an empty file. A YAML
// library panic is turned into an error: a reload must never bring the
// gateway down.
func (p *parser) decode(data []byte) (root *yaml.Node) {
	defer func() {
		if r := recover(); r != nil {
			p.errf(0, "", "YAML parser failed: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			p.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.errf(extra.Line, "", "more than one YAML document in the file (a second \"---\")")
	case errors.Is(err, io.EOF):
	default:
		p.yamlError(err)
	}
	return &doc
}

// spend charges n nodes to the budget and reports whether the walk may go on.
func (p *parser) spend(n, line int) bool {
	p.budget -= n
	if p.budget < 0 {
		if !p.exhausted {
			// Report it without a line (the walk was somewhere deep inside
			// aliases), and drop what follows: a cut-short walk only
			// produces noise.
			p.exhausted = true
			p.errf(0, "", "document too large or too much aliasing (over %d nodes)", nodeBudget)
			p.errsAtExhaustion = len(p.errs)
		}
		return false
	}
	return true
}

// deref follows aliases and unwraps documents.
func deref(n *yaml.Node) *yaml.Node {
	for range 100 {
		if n == nil {
			return nil
		}
		switch n.Kind {
		case yaml.AliasNode:
			n = n.Alias
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		default:
			return n
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	n = deref(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean (" + n.Value + ")"
		case "!!int":
			return "an integer (" + n.Value + ")"
		case "!!float":
			return "a number (" + n.Value + ")"
		case "!!str":
			return strconv.Quote(clip(n.Value))
		default:
			return "a value tagged " + n.Tag
		}
	}
	return "an unsupported YAML node"
}

// clip shortens a value quoted back in a message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// val is a value in the tree with the key it sits under.
type val struct {
	n    *yaml.Node
	key  string
	line int
}

// field is one key of a mapping.
type field struct {
	name    string
	keyLine int
	v       val
}

func join(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

func index(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }

func lineOf(n *yaml.Node, fallback int) int {
	if n != nil && n.Line > 0 {
		return n.Line
	}
	return fallback
}

// fields returns the known keys of a mapping in file order, with merge keys
// ("<<") expanded and null values dropped (a key with no value counts as
// absent). Unknown and duplicate keys are reported and left out. A nil known
// accepts every key and keeps nulls.
func (p *parser) fields(v val, known []string) []field {
	n := deref(v.n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errf(v.line, v.key, "want a mapping (key: value lines), got %s", describe(n))
		return nil
	}
	if !p.spend(len(n.Content), v.line) {
		return nil
	}
	var out, merged []field
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, vn := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, p.mergeFields(val{vn, v.key, lineOf(vn, k.Line)}, known)...)
			continue
		}
		kd := deref(k)
		if kd == nil || kd.Kind != yaml.ScalarNode {
			p.errf(lineOf(k, v.line), v.key, "keys must be plain strings, got %s", describe(k))
			continue
		}
		name := kd.Value
		key := join(v.key, name)
		if first, dup := seen[name]; dup {
			p.errf(k.Line, key, "duplicate key (first at line %d)", first)
			continue
		}
		seen[name] = k.Line
		// A value is reported at its key's line: for a block mapping or list
		// that is the line naming it, not the line of its first entry.
		f := field{name: name, keyLine: k.Line, v: val{vn, key, lineOf(k, v.line)}}
		if known == nil { // free-form mapping (set_headers): every key, nulls too
			out = append(out, f)
			continue
		}
		if !slices.Contains(known, name) {
			p.unknown(f, known)
			continue
		}
		if isNull(vn) {
			continue
		}
		out = append(out, f)
	}
	// Keys written in the mapping win over merged ones (YAML merge semantics).
	for _, f := range merged {
		if _, ok := seen[f.name]; !ok {
			seen[f.name] = f.keyLine
			out = append(out, f)
		}
	}
	return out
}

func (p *parser) mergeFields(v val, known []string) []field {
	n := deref(v.n)
	if n != nil && n.Kind == yaml.SequenceNode {
		var out []field
		for _, item := range p.items(v) {
			out = append(out, p.fields(item, known)...)
		}
		return out
	}
	return p.fields(v, known)
}

// items returns the entries of a list.
func (p *parser) items(v val) []val {
	n := deref(v.n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(v.line, v.key, "want a list, got %s", describe(n))
		return nil
	}
	if !p.spend(len(n.Content), v.line) {
		return nil
	}
	out := make([]val, len(n.Content))
	for i, c := range n.Content {
		out[i] = val{c, index(v.key, i), lineOf(c, v.line)}
	}
	return out
}

// accept records where a successfully parsed value came from.
func (p *parser) accept(v val) { p.lines[v.key] = v.line }

func (p *parser) scalar(v val, want string) (*yaml.Node, bool) {
	n := deref(v.n)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		p.errf(v.line, v.key, "want %s, got %s", want, describe(v.n))
		return nil, false
	}
	return n, true
}

func (p *parser) str(v val) (string, bool) {
	n, ok := p.scalar(v, "a string")
	if !ok {
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
		p.accept(v)
		return n.Value, true
	}
	p.errf(v.line, v.key, "want a string, got %s (quote it)", describe(n))
	return "", false
}

func (p *parser) boolean(v val) (bool, bool) {
	n, ok := p.scalar(v, "true or false")
	if !ok {
		return false, false
	}
	if n.ShortTag() != "!!bool" {
		p.errf(v.line, v.key, "want true or false, got %s", describe(n))
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		p.errf(v.line, v.key, "want true or false, got %s", describe(n))
		return false, false
	}
	p.accept(v)
	return b, true
}

// integer accepts a YAML integer or a string of decimal digits, within [lo, hi].
func (p *parser) integer(v val, lo, hi int64) (int64, bool) {
	n, ok := p.scalar(v, "an integer")
	if !ok {
		return 0, false
	}
	var i int64
	var err error
	switch n.ShortTag() {
	case "!!int":
		err = n.Decode(&i)
	case "!!str":
		i, err = strconv.ParseInt(n.Value, 10, 64)
	default:
		err = errors.New("not an integer")
	}
	if err != nil {
		p.errf(v.line, v.key, "want an integer, got %s", describe(n))
		return 0, false
	}
	if i < lo || i > hi {
		switch {
		case hi == math.MaxInt64:
			p.errf(v.line, v.key, "%d is out of range (must be at least %d)", i, lo)
		default:
			p.errf(v.line, v.key, "%d is out of range (must be %d to %d)", i, lo, hi)
		}
		return 0, false
	}
	p.accept(v)
	return i, true
}

func (p *parser) durationVal(v val) (time.Duration, bool) {
	n, ok := p.scalar(v, "a duration like 10s")
	if !ok {
		return 0, false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
	default:
		p.errf(v.line, v.key, "want a duration like 10s, got %s", describe(n))
		return 0, false
	}
	d, err := parseDuration(n.Value)
	if err != nil {
		p.errf(v.line, v.key, "%v", err)
		return 0, false
	}
	p.accept(v)
	return d, true
}

// positiveDuration is durationVal that also refuses zero.
func (p *parser) positiveDuration(v val) (time.Duration, bool) {
	d, ok := p.durationVal(v)
	if ok && d == 0 {
		p.errf(v.line, v.key, "must be greater than 0")
		delete(p.lines, v.key)
		return 0, false
	}
	return d, ok
}

// sizeVal accepts a YAML integer (bytes) or a size string, at least lo.
func (p *parser) sizeVal(v val, lo Size) (Size, bool) {
	n, ok := p.scalar(v, "a size like 64KiB")
	if !ok {
		return 0, false
	}
	var s Size
	switch n.ShortTag() {
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			p.errf(v.line, v.key, "size %s is too large", clip(n.Value))
			return 0, false
		}
		if i < 0 {
			p.errf(v.line, v.key, "size %d must not be negative", i)
			return 0, false
		}
		s = Size(i)
	case "!!str":
		var err error
		if s, err = ParseSize(n.Value); err != nil {
			p.errf(v.line, v.key, "%v", err)
			return 0, false
		}
	default:
		p.errf(v.line, v.key, "want a size like 64KiB or a whole number of bytes, got %s", describe(n))
		return 0, false
	}
	if s < lo {
		if lo == 1 {
			p.errf(v.line, v.key, "must be greater than 0")
		} else {
			p.errf(v.line, v.key, "%s is too small (minimum %s)", s, lo)
		}
		return 0, false
	}
	p.accept(v)
	return s, true
}

// oneOf accepts one of the listed strings.
func (p *parser) oneOf(v val, choices ...string) (string, bool) {
	s, ok := p.str(v)
	if !ok {
		return "", false
	}
	if !slices.Contains(choices, s) {
		delete(p.lines, v.key)
		p.errf(v.line, v.key, "%q is not one of %s", clip(s), strings.Join(choices, ", "))
		return "", false
	}
	return s, true
}

// unknown reports a key that has no meaning where it is.
func (p *parser) unknown(f field, known []string) {
	msg := "unknown key"
	if s := suggest(f.name, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else if slices.Contains(settingKeys, f.name) {
		msg += " (route settings go under defaults: or in a route)"
	} else if slices.Contains(routeKeys, f.name) {
		msg += " (route keys go in an entry of routes:)"
	}
	p.errf(f.keyLine, f.v.key, "%s", msg)
}

// suggest returns the known key closest to name, if it is close enough to be
// a typo.
func suggest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ---------------------------------------------------------------------------
// The document.

var (
	topKeys    = []string{"server", "tls", "log", "defaults", "routes"}
	serverKeys = []string{"listen", "tls_listen", "admin_listen", "trusted_proxies", "proxy_protocol",
		"max_connections", "handshake_timeout", "max_header_bytes", "max_pending_per_ip",
		"upstream_failure_code", "shutdown_grace", "shutdown_close_code", "close_spread"}
	tlsKeys      = []string{"acme", "certificates", "min_version"}
	acmeKeys     = []string{"email", "ca", "ca_root", "agree_terms", "storage"}
	certKeys     = []string{"cert", "key"}
	logKeys      = []string{"level", "format", "access"}
	settingKeys  = []string{"upstream_dial_timeout", "idle_timeout", "ping_interval", "pong_timeout", "close_timeout", "write_timeout", "max_frame_bytes", "max_message_bytes", "origins", "rate_limit"}
	rateKeys     = []string{"handshakes", "connections_per_ip", "messages", "messages_per_ip", "bytes", "frames", "on_exceed"}
	rateSpecKeys = []string{"rate", "burst"}
	routeKeys    = []string{"name", "host", "path", "strip_prefix", "upstreams", "balance", "upstream_tls", "subprotocols", "set_headers", "allow_plain"}
	upstreamKeys = []string{"url", "weight"}
	upTLSKeys    = []string{"ca", "server_name", "insecure_skip_verify"}
	// routeFieldKeys are the keys a route accepts: its own and any setting.
	routeFieldKeys = slices.Concat(routeKeys, settingKeys)
)

func builtinServer() ServerConfig {
	return ServerConfig{
		Listen:              DefaultListen,
		HandshakeTimeout:    10 * time.Second,
		MaxHeaderBytes:      16 * KiB,
		MaxPendingPerIP:     32,
		UpstreamFailureCode: 1014,
		ShutdownGrace:       30 * time.Second,
		ShutdownCloseCode:   1001,
		CloseSpread:         5 * time.Second,
	}
}

func builtinSettings() RouteSettings {
	return RouteSettings{
		UpstreamDialTimeout: 5 * time.Second,
		IdleTimeout:         5 * time.Minute,
		PingInterval:        30 * time.Second,
		PongTimeout:         15 * time.Second,
		CloseTimeout:        5 * time.Second,
		WriteTimeout:        30 * time.Second,
		MaxFrameBytes:       1 * MiB,
		MaxMessageBytes:     4 * MiB,
		RateLimit:           RateLimits{OnExceed: DefaultOnExceed},
	}
}

func (p *parser) config(root *yaml.Node) *Config {
	cfg := &Config{
		Path:   p.file,
		Server: builtinServer(),
		TLS:    TLSConfig{MinVersion: DefaultTLSMinVersion},
		Log:    LogConfig{Level: "info", Format: "json", Access: true},
	}
	doc := deref(root)
	docLine := lineOf(doc, 0)
	if doc != nil && !isNull(doc) && doc.Kind != yaml.MappingNode {
		p.errf(docLine, "", "the config must be a mapping with the keys %s; got %s", strings.Join(topKeys, ", "), describe(doc))
		return cfg
	}
	var defaults settingsLayer
	var routes *field
	for _, f := range p.fields(val{doc, "", docLine}, topKeys) {
		switch f.name {
		case "server":
			p.server(f.v, &cfg.Server)
		case "tls":
			p.tlsBlock(f.v, &cfg.TLS)
		case "log":
			p.logBlock(f.v, &cfg.Log)
		case "defaults":
			p.accept(f.v)
			for _, g := range p.fields(f.v, settingKeys) {
				p.setting(&defaults, g)
			}
		case "routes":
			routes = &f
		}
	}
	cfg.Defaults = p.resolveSettings("defaults", settingsLayer{}, defaults, p.firstLine("defaults"))
	if routes == nil {
		p.errf(docLine, "routes", "required: at least one route")
	} else {
		cfg.Routes = p.routes(routes.v, defaults)
	}
	p.checkServer(cfg)
	p.checkTLS(cfg)
	return cfg
}

func (p *parser) finish(cfg *Config) (*Config, error) {
	if p.exhausted {
		p.errs = p.errs[:p.errsAtExhaustion]
	}
	if len(p.errs) > 0 {
		return nil, Errors(sortDedupe(p.errs))
	}
	for _, w := range sortDedupe(p.warns) {
		cfg.Warnings = append(cfg.Warnings, w.Error())
	}
	return cfg, nil
}

// sortDedupe sorts by line, keeping discovery order on a line, and drops
// repeats (an aliased block is walked once per use).
func sortDedupe(es []*Error) []*Error {
	seen := map[Error]bool{}
	out := es[:0:0]
	for _, e := range es {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// ---------------------------------------------------------------------------
// server

func (p *parser) server(v val, s *ServerConfig) {
	p.accept(v)
	for _, f := range p.fields(v, serverKeys) {
		switch f.name {
		case "listen", "tls_listen", "admin_listen":
			a, ok := p.str(f.v)
			if !ok {
				continue
			}
			if a != "" {
				if err := checkListenAddr(a); err != nil {
					p.errf(f.v.line, f.v.key, "%v", err)
					continue
				}
			}
			switch f.name {
			case "listen":
				s.Listen = a
			case "tls_listen":
				s.TLSListen = a
			default:
				s.AdminListen = a
			}
		case "trusted_proxies":
			s.TrustedProxies = nil
			for _, item := range p.items(f.v) {
				str, ok := p.str(item)
				if !ok {
					continue
				}
				pfx, err := parseTrustedProxy(str)
				if err != nil {
					p.errf(item.line, item.key, "%v", err)
					continue
				}
				if pfx != pfx.Masked() {
					p.warnf(item.line, item.key, "%s has host bits set; using %s", str, pfx.Masked())
					pfx = pfx.Masked()
				}
				if pfx.Bits() == 0 {
					p.warnf(item.line, item.key, "%s trusts every peer: any client can choose the address it is logged and limited by", pfx)
				}
				s.TrustedProxies = append(s.TrustedProxies, pfx)
			}
		case "proxy_protocol":
			if b, ok := p.boolean(f.v); ok {
				s.ProxyProtocol = b
			}
		case "max_connections":
			if i, ok := p.integer(f.v, 0, math.MaxInt32); ok {
				s.MaxConnections = int(i)
			}
		case "handshake_timeout":
			if d, ok := p.positiveDuration(f.v); ok {
				s.HandshakeTimeout = d
			}
		case "max_header_bytes":
			if sz, ok := p.sizeVal(f.v, 1); ok {
				s.MaxHeaderBytes = sz
				if sz < 1*KiB {
					p.warnf(f.v.line, f.v.key, "%s is very small: ordinary browser requests will get 431", sz)
				}
			}
		case "max_pending_per_ip":
			if i, ok := p.integer(f.v, 0, math.MaxInt32); ok {
				s.MaxPendingPerIP = int(i)
			}
		case "upstream_failure_code":
			if c, ok := p.closeCode(f.v, 1011, 1014); ok {
				s.UpstreamFailureCode = c
			}
		case "shutdown_grace":
			if d, ok := p.positiveDuration(f.v); ok {
				s.ShutdownGrace = d
			}
		case "shutdown_close_code":
			if c, ok := p.closeCode(f.v, 1001, 1012); ok {
				s.ShutdownCloseCode = c
			}
		case "close_spread":
			if d, ok := p.durationVal(f.v); ok {
				s.CloseSpread = d
			}
		}
	}
}

func (p *parser) closeCode(v val, allowed ...int64) (uint16, bool) {
	i, ok := p.integer(v, 0, math.MaxUint16)
	if !ok {
		return 0, false
	}
	if !slices.Contains(allowed, i) {
		delete(p.lines, v.key)
		p.errf(v.line, v.key, "%d is not allowed here (use %d or %d)", i, allowed[0], allowed[1])
		return 0, false
	}
	return uint16(i), true
}

// checkListenAddr accepts "host:port" with a numeric port; host may be empty
// (all interfaces), an IP or a name such as localhost. Port 0 (any free port)
// is allowed for tests.
func checkListenAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("bad address %q: want host:port, e.g. \":8080\" or \"127.0.0.1:9090\"", clip(a))
	}
	if !allDigits(port) || len(port) > 5 {
		return fmt.Errorf("bad address %q: the port must be a number", clip(a))
	}
	if n, _ := strconv.Atoi(port); n > 65535 {
		return fmt.Errorf("bad address %q: port %d is out of range", clip(a), n)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !isDNSName(host, false) {
			return fmt.Errorf("bad address %q: %q is neither an IP address nor a host name", clip(a), clip(host))
		}
	}
	return nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseTrustedProxy accepts a CIDR or a bare IP (a single address).
func parseTrustedProxy(s string) (netip.Prefix, error) {
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return pfx, nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad trusted proxy %q: want a CIDR like 10.0.0.0/8 or an IP address", clip(s))
	}
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (p *parser) checkServer(cfg *Config) {
	s := &cfg.Server
	if s.Listen == "" && s.TLSListen == "" {
		p.errf(p.firstLine("server.listen", "server"), "server.listen", "no listener: set listen or tls_listen")
	}
	addrs := []struct{ key, addr string }{
		{"server.listen", s.Listen}, {"server.tls_listen", s.TLSListen}, {"server.admin_listen", s.AdminListen},
	}
	for i, a := range addrs {
		for _, b := range addrs[:i] {
			// Port 0 asks the kernel for a free port: never a clash.
			if a.addr != "" && a.addr == b.addr && !strings.HasSuffix(a.addr, ":0") {
				p.errf(p.firstLine(a.key, "server"), a.key, "%q is already used by %s", a.addr, b.key)
			}
		}
	}
	if s.AdminListen != "" {
		if host, _, err := net.SplitHostPort(s.AdminListen); err == nil && !isLoopbackHost(host) {
			p.warnf(p.lines["server.admin_listen"], "server.admin_listen",
				"%q is reachable from the network: it serves /debug/pprof and POST /drain without authentication", s.AdminListen)
		}
	}
	if s.CloseSpread >= s.ShutdownGrace {
		key := "server.close_spread"
		if _, ok := p.lines[key]; !ok {
			key = "server.shutdown_grace"
		}
		p.errf(p.firstLine(key, "server"), key, "close_spread %s must be less than shutdown_grace %s (sessions must have time to finish their close handshake)",
			s.CloseSpread, s.ShutdownGrace)
	}
}

// firstLine returns the line of the first of keys that was set.
func (p *parser) firstLine(keys ...string) int {
	for _, k := range keys {
		if l, ok := p.lines[k]; ok {
			return l
		}
	}
	return 0
}

// ---------------------------------------------------------------------------
// tls and log

func (p *parser) tlsBlock(v val, t *TLSConfig) {
	p.accept(v)
	p.certsOK = true
	for _, f := range p.fields(v, tlsKeys) {
		switch f.name {
		case "acme":
			p.accept(f.v)
			t.ACME = p.acme(f.v)
		case "certificates":
			for _, item := range p.items(f.v) {
				if c, ok := p.certificate(item); ok {
					t.Certificates = append(t.Certificates, c)
				} else {
					p.certsOK = false
				}
			}
		case "min_version":
			if s, ok := p.str(f.v); ok {
				if s != "1.2" && s != "1.3" {
					p.errf(f.v.line, f.v.key, "%q is not supported: use \"1.2\" or \"1.3\"", clip(s))
					continue
				}
				t.MinVersion = s
			}
		}
	}
}

func (p *parser) acme(v val) *ACMEConfig {
	a := &ACMEConfig{CA: DefaultACMECA, Storage: DefaultACMEStorage}
	fields := p.fields(v, acmeKeys)
	if n := deref(v.n); n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for _, f := range fields {
		switch f.name {
		case "email":
			if s, ok := p.str(f.v); ok {
				if !validEmail(s) {
					p.errf(f.v.line, f.v.key, "%q is not an email address", clip(s))
				}
				a.Email = s
			}
		case "ca":
			if s, ok := p.str(f.v); ok {
				if err := checkACMECA(s); err != nil {
					p.errf(f.v.line, f.v.key, "%v", err)
				}
				a.CA = s
			}
		case "ca_root":
			if s, ok := p.str(f.v); ok && s != "" {
				if err := checkPEMCerts(s); err != nil {
					p.errf(f.v.line, f.v.key, "%v", err)
				}
				a.CARoot = s
			}
		case "agree_terms":
			if b, ok := p.boolean(f.v); ok {
				a.AgreeTerms = b
			}
		case "storage":
			if s, ok := p.str(f.v); ok {
				if s == "" {
					p.errf(f.v.line, f.v.key, "must not be empty")
				}
				a.Storage = s
			}
		}
	}
	if !a.AgreeTerms {
		key := join(v.key, "agree_terms")
		p.errf(p.firstLine(key, v.key), key, "must be true: set it to agree to the ACME CA's terms of service (wsgate never agrees for you)")
	}
	if _, ok := p.lines[join(v.key, "email")]; !ok {
		p.errf(v.line, join(v.key, "email"), "required: the ACME CA sends expiry and account notices there")
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
		return fmt.Errorf("bad ACME directory URL %q: want https://host/path", clip(s))
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("ACME directory URL %q must use https (http is allowed only for localhost test CAs)", clip(s))
		}
	default:
		return fmt.Errorf("bad ACME directory URL %q: want https://host/path", clip(s))
	}
	return nil
}

func (p *parser) certificate(v val) (CertFile, bool) {
	var c CertFile
	if n := deref(v.n); n == nil || n.Kind != yaml.MappingNode {
		p.errf(v.line, v.key, "want a mapping {cert: FILE, key: FILE}, got %s", describe(v.n))
		return c, false
	}
	ok := true
	for _, f := range p.fields(v, certKeys) {
		switch f.name {
		case "cert":
			c.Cert, _ = p.str(f.v)
		case "key":
			c.Key, _ = p.str(f.v)
		}
	}
	for _, k := range []struct{ name, val string }{{"cert", c.Cert}, {"key", c.Key}} {
		if k.val == "" {
			p.errf(v.line, join(v.key, k.name), "required: a PEM file")
			ok = false
		}
	}
	if !ok {
		return c, false
	}
	certPEM, err := readSmallFile(c.Cert)
	if err != nil {
		p.errf(p.firstLine(join(v.key, "cert")), join(v.key, "cert"), "%v", err)
		return c, false
	}
	keyPEM, err := readSmallFile(c.Key)
	if err != nil {
		p.errf(p.firstLine(join(v.key, "key")), join(v.key, "key"), "%v", err)
		return c, false
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		p.errf(v.line, v.key, "cannot load %s and %s as a certificate and key: %v", c.Cert, c.Key, err)
		return c, false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		p.errf(v.line, v.key, "cannot parse certificate %s: %v", c.Cert, err)
		return c, false
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		p.warnf(v.line, v.key, "certificate %s expired on %s", c.Cert, leaf.NotAfter.Format(time.DateOnly))
	} else if now.Before(leaf.NotBefore) {
		p.warnf(v.line, v.key, "certificate %s is not valid before %s", c.Cert, leaf.NotBefore.Format(time.DateOnly))
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
		p.warnf(v.line, v.key, "certificate %s names no host (no subject alternative names)", c.Cert)
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

func (p *parser) logBlock(v val, l *LogConfig) {
	p.accept(v)
	for _, f := range p.fields(v, logKeys) {
		switch f.name {
		case "level":
			if s, ok := p.oneOf(f.v, "debug", "info", "warn", "error"); ok {
				l.Level = s
			}
		case "format":
			if s, ok := p.oneOf(f.v, "json", "console"); ok {
				l.Format = s
			}
		case "access":
			if b, ok := p.boolean(f.v); ok {
				l.Access = b
			}
		}
	}
}

func (p *parser) checkTLS(cfg *Config) {
	t := &cfg.TLS
	if !cfg.TLSEnabled() {
		if _, ok := p.lines["tls"]; ok && (t.ACME != nil || len(t.Certificates) > 0) {
			p.warnf(p.lines["tls"], "tls", "server.tls_listen is not set: TLS is off and this block is unused")
		}
		for _, r := range cfg.Routes {
			if r.AllowPlain {
				key := r.key + ".allow_plain"
				p.warnf(p.lines[key], key, "has no effect without TLS (server.tls_listen): plain ws:// is all there is")
			}
		}
		return
	}
	tlsLine := p.firstLine("server.tls_listen")
	if t.ACME == nil && len(t.Certificates) == 0 {
		if p.certsOK || p.lines["tls"] == 0 {
			p.errf(tlsLine, "server.tls_listen", "TLS is on but there is no certificate: add tls.certificates or tls.acme")
		}
		return
	}
	if t.ACME != nil && cfg.Server.Listen == "" {
		p.warnf(p.lines["tls.acme"], "tls.acme", "server.listen is off: only TLS-ALPN-01 challenges can be answered, and plain requests are not redirected to https")
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
				p.errf(line, key, "wildcard host %q needs a static certificate for %q in tls.certificates (ACME cannot issue wildcards over HTTP-01)", r.Host, r.Host)
			}
		case covered:
		case t.ACME != nil:
			if _, err := netip.ParseAddr(r.Host); err == nil {
				p.warnf(line, key, "no static certificate covers the IP address %s, and ACME is not asked for IP certificates", r.Host)
			} else {
				exact++
			}
		default:
			p.warnf(line, key, "no static certificate covers %q: TLS handshakes for it will fail", r.Host)
		}
	}
	if t.ACME != nil && exact == 0 {
		p.warnf(p.lines["tls.acme"], "tls.acme", "no route has an exact host that needs a certificate: ACME will not request any")
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

// ---------------------------------------------------------------------------
// Route settings: layers and merging.

type opt[T any] struct {
	set bool
	v   T
}

func (o *opt[T]) put(v T) { o.set, o.v = true, v }

func (o opt[T]) or(fallback opt[T]) opt[T] {
	if o.set {
		return o
	}
	return fallback
}

func (o opt[T]) get(def T) T {
	if o.set {
		return o.v
	}
	return def
}

// rateSpec is one rate_limit entry as written. burst 0 = not written.
type rateSpec struct {
	unlimited bool
	perSecond float64
	burst     int64
}

// settingsLayer holds the settings one block wrote; unset fields inherit.
type settingsLayer struct {
	dialTimeout, idle, ping, pong, closeT, write opt[time.Duration]
	maxFrame, maxMessage                         opt[Size]
	origins                                      opt[[]string]
	handshakes, messages, messagesPerIP          opt[rateSpec]
	bytes, frames                                opt[rateSpec]
	connsPerIP                                   opt[int]
	onExceed                                     opt[string]
}

// over returns l with base underneath: l's set fields win, key by key, also
// inside rate_limit.
func (l settingsLayer) over(base settingsLayer) settingsLayer {
	return settingsLayer{
		dialTimeout:   l.dialTimeout.or(base.dialTimeout),
		idle:          l.idle.or(base.idle),
		ping:          l.ping.or(base.ping),
		pong:          l.pong.or(base.pong),
		closeT:        l.closeT.or(base.closeT),
		write:         l.write.or(base.write),
		maxFrame:      l.maxFrame.or(base.maxFrame),
		maxMessage:    l.maxMessage.or(base.maxMessage),
		origins:       l.origins.or(base.origins),
		handshakes:    l.handshakes.or(base.handshakes),
		messages:      l.messages.or(base.messages),
		messagesPerIP: l.messagesPerIP.or(base.messagesPerIP),
		bytes:         l.bytes.or(base.bytes),
		frames:        l.frames.or(base.frames),
		connsPerIP:    l.connsPerIP.or(base.connsPerIP),
		onExceed:      l.onExceed.or(base.onExceed),
	}
}

// setting parses one settings key into l; false if name is not a setting.
func (p *parser) setting(l *settingsLayer, f field) bool {
	durations := map[string]*opt[time.Duration]{
		"upstream_dial_timeout": &l.dialTimeout,
		"idle_timeout":          &l.idle,
		"close_timeout":         &l.closeT,
		"write_timeout":         &l.write,
	}
	if o, ok := durations[f.name]; ok {
		if d, ok := p.positiveDuration(f.v); ok {
			o.put(d)
		}
		return true
	}
	switch f.name {
	case "ping_interval":
		if d, ok := p.durationVal(f.v); ok {
			l.ping.put(d)
		}
	case "pong_timeout":
		if d, ok := p.durationVal(f.v); ok {
			l.pong.put(d)
		}
	case "max_frame_bytes":
		if s, ok := p.sizeVal(f.v, minFrameBytes); ok {
			l.maxFrame.put(s)
		}
	case "max_message_bytes":
		if s, ok := p.sizeVal(f.v, 1); ok {
			l.maxMessage.put(s)
		}
	case "origins":
		n := deref(f.v.n)
		if n != nil && n.Kind == yaml.ScalarNode {
			p.errf(f.v.line, f.v.key, "want a list of origins, e.g. [\"https://app.example.com\"], got %s", describe(n))
			return true
		}
		list, ok := []string{}, true
		seen := map[string]bool{}
		for _, item := range p.items(f.v) {
			s, sok := p.str(item)
			if !sok {
				ok = false
				continue
			}
			o, err := normalizeOrigin(s, true)
			if err != nil {
				p.errf(item.line, item.key, "%v", err)
				ok = false
				continue
			}
			if seen[o] {
				p.warnf(item.line, item.key, "origin %q is listed twice", o)
				continue
			}
			seen[o] = true
			list = append(list, o)
		}
		if ok {
			p.accept(f.v)
			l.origins.put(list)
		}
	case "rate_limit":
		p.accept(f.v)
		p.rateLimit(f.v, l)
	default:
		return false
	}
	return true
}

func (p *parser) rateLimit(v val, l *settingsLayer) {
	for _, f := range p.fields(v, rateKeys) {
		switch f.name {
		case "handshakes":
			p.rateEntry(f.v, &l.handshakes, false)
		case "messages":
			p.rateEntry(f.v, &l.messages, false)
		case "messages_per_ip":
			p.rateEntry(f.v, &l.messagesPerIP, false)
		case "bytes":
			p.rateEntry(f.v, &l.bytes, true)
		case "frames":
			p.rateEntry(f.v, &l.frames, false)
		case "connections_per_ip":
			if i, ok := p.integer(f.v, 0, math.MaxInt32); ok {
				l.connsPerIP.put(int(i))
			}
		case "on_exceed":
			if s, ok := p.oneOf(f.v, "close", "throttle"); ok {
				l.onExceed.put(s)
			}
		}
	}
}

// rateEntry parses {rate: 20/s, burst: 40}, the short form "20/s" (burst
// derived), or "unlimited" (lifts an inherited limit).
func (p *parser) rateEntry(v val, o *opt[rateSpec], isBytes bool) {
	example := "{rate: 20/s, burst: 40}"
	if isBytes {
		example = "{rate: 1MiB/s, burst: 4MiB}"
	}
	parseRate := func(v val) (float64, bool) {
		s, ok := p.str(v)
		if !ok {
			return 0, false
		}
		var r float64
		var err error
		if isBytes {
			r, err = ParseByteRate(s)
		} else {
			r, err = ParseRate(s)
		}
		if err != nil {
			delete(p.lines, v.key)
			p.errf(v.line, v.key, "%v", err)
			return 0, false
		}
		return r, true
	}
	n := deref(v.n)
	if n != nil && n.Kind == yaml.ScalarNode {
		if n.Value == "unlimited" {
			p.accept(v)
			o.put(rateSpec{unlimited: true})
			return
		}
		if r, ok := parseRate(v); ok {
			o.put(rateSpec{perSecond: r})
		}
		return
	}
	if n == nil || n.Kind != yaml.MappingNode {
		p.errf(v.line, v.key, "want %s or \"unlimited\", got %s", example, describe(n))
		return
	}
	var spec rateSpec
	ok, haveRate := true, false
	for _, f := range p.fields(v, rateSpecKeys) {
		switch f.name {
		case "rate":
			r, rok := parseRate(f.v)
			ok = ok && rok
			haveRate = rok
			spec.perSecond = r
		case "burst":
			var b int64
			var bok bool
			if isBytes {
				var s Size
				s, bok = p.sizeVal(f.v, 1)
				b = int64(s)
			} else {
				b, bok = p.integer(f.v, 1, math.MaxInt32)
			}
			ok = ok && bok
			spec.burst = b
		}
	}
	if !haveRate && ok {
		p.errf(v.line, join(v.key, "rate"), "required, e.g. %s", example)
		ok = false
	}
	if ok {
		p.accept(v)
		o.put(spec)
	}
}

// resolveSettings turns a block's layer over its base into RouteSettings and
// checks the contradictions between values. scope is "defaults" or
// "routes[i]"; for a route, a contradiction made only of values inherited
// from defaults is not repeated (it was reported on defaults).
func (p *parser) resolveSettings(scope string, base, own settingsLayer, scopeLine int) RouteSettings {
	l := own.over(base)
	s := builtinSettings()
	s.UpstreamDialTimeout = l.dialTimeout.get(s.UpstreamDialTimeout)
	s.IdleTimeout = l.idle.get(s.IdleTimeout)
	s.PingInterval = l.ping.get(s.PingInterval)
	s.PongTimeout = l.pong.get(s.PongTimeout)
	s.CloseTimeout = l.closeT.get(s.CloseTimeout)
	s.WriteTimeout = l.write.get(s.WriteTimeout)
	s.MaxFrameBytes = l.maxFrame.get(s.MaxFrameBytes)
	s.MaxMessageBytes = l.maxMessage.get(s.MaxMessageBytes)
	if l.origins.set && len(l.origins.v) > 0 {
		s.Origins = slices.Clone(l.origins.v)
	}
	frame := s.EffectiveMaxFrameBytes()
	rl := &s.RateLimit
	rl.Handshakes = toRate(l.handshakes, 0)
	rl.Messages = toRate(l.messages, 0)
	rl.MessagesPerIP = toRate(l.messagesPerIP, 0)
	rl.Bytes = toRate(l.bytes, frame)
	rl.Frames = toRate(l.frames, 0)
	rl.ConnectionsPerIP = l.connsPerIP.get(0)
	rl.OnExceed = l.onExceed.get(DefaultOnExceed)

	isRoute := scope != "defaults"
	// blame picks the key and line to report a contradiction between names
	// at: the first one this block wrote itself; for defaults, the first one
	// written at all.
	blame := func(names ...string) (string, int, bool) {
		for _, n := range names {
			if line, ok := p.lines[scope+"."+n]; ok {
				return scope + "." + n, line, true
			}
		}
		if isRoute {
			return "", 0, false
		}
		return scope + "." + names[0], scopeLine, true
	}
	if s.PingInterval > 0 && s.PongTimeout == 0 {
		if key, line, ok := blame("pong_timeout", "ping_interval"); ok {
			p.errf(line, key, "pong_timeout must be greater than 0 while ping_interval is %s (set ping_interval: 0 to turn keepalive pings off)", s.PingInterval)
		}
	}
	if l.bytes.set && !l.bytes.v.unlimited && l.bytes.v.burst > 0 && Size(l.bytes.v.burst) < frame {
		if key, line, ok := blame("rate_limit.bytes.burst", "rate_limit.bytes", "max_frame_bytes", "max_message_bytes"); ok {
			p.errf(line, key, "rate_limit.bytes.burst %s is less than the largest frame allowed (%s): such a frame could never pass the byte limit",
				Size(l.bytes.v.burst), frame)
		}
	}
	if s.MaxFrameBytes > s.MaxMessageBytes {
		if key, line, ok := blame("max_message_bytes", "max_frame_bytes"); ok {
			p.warnf(line, key, "max_frame_bytes %s > max_message_bytes %s: frames are capped at %s",
				s.MaxFrameBytes, s.MaxMessageBytes, s.MaxMessageBytes)
		}
	}
	if s.PingInterval > 0 && s.PingInterval < time.Second {
		if key, line, ok := blame("ping_interval"); ok {
			p.warnf(line, key, "ping_interval %s is very short: every session pings both legs that often", s.PingInterval)
		}
	}
	return s
}

// toRate resolves a rate entry; an omitted burst is one second's worth, and
// for bytes at least one largest frame, so the limit can always be met.
func toRate(o opt[rateSpec], minBurst Size) *Rate {
	if !o.set || o.v.unlimited {
		return nil
	}
	burst := o.v.burst
	if burst == 0 {
		burst = max(1, int64(min(math.Ceil(o.v.perSecond), math.MaxInt32)), int64(minBurst))
	}
	return &Rate{PerSecond: o.v.perSecond, Burst: burst}
}

// ---------------------------------------------------------------------------
// routes

var routeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

func (p *parser) routes(v val, defaults settingsLayer) []*Route {
	items := p.items(v)
	if len(items) == 0 {
		if n := deref(v.n); n != nil && n.Kind == yaml.SequenceNode {
			p.errf(v.line, v.key, "required: at least one route")
		}
		return nil
	}
	var routes []*Route
	type place struct {
		idx  int
		line int
	}
	names := map[string]place{}
	hostPaths := map[string]place{}
	for i, item := range items {
		r := p.route(item, defaults)
		if r == nil {
			continue
		}
		routes = append(routes, r)
		if r.Name != "" {
			key := item.key + ".name"
			if first, dup := names[r.Name]; dup {
				p.errf(p.lines[key], key, "duplicate route name %q (first used by routes[%d] at line %d)", r.Name, first.idx, first.line)
			} else {
				names[r.Name] = place{i, p.lines[key]}
			}
		}
		hp := r.Host + "\x00" + r.Path
		key := item.key + ".path"
		if first, dup := hostPaths[hp]; dup {
			host := r.Host
			if host == "" {
				host = "any host"
			}
			line := p.firstLine(key, item.key+".host")
			if line == 0 {
				line = r.Line
			}
			p.errf(line, key, "host %s and path %q are already routed by routes[%d] (line %d)", host, r.Path, first.idx, first.line)
		} else {
			hostPaths[hp] = place{i, r.Line}
		}
	}
	return routes
}

func (p *parser) route(v val, defaults settingsLayer) *Route {
	n := deref(v.n)
	if n == nil || n.Kind != yaml.MappingNode {
		p.errf(v.line, v.key, "want a route (a mapping with name, path, upstreams...), got %s", describe(v.n))
		return nil
	}
	r := &Route{Path: "/", Balance: DefaultBalance, Line: v.line, key: v.key}
	var own settingsLayer
	haveName, haveUpstreams := false, false
	for _, f := range p.fields(v, routeFieldKeys) {
		switch f.name {
		case "name":
			haveName = true
			if s, ok := p.str(f.v); ok {
				if !routeNameRE.MatchString(s) {
					delete(p.lines, f.v.key)
					p.errf(f.v.line, f.v.key, "%q is not a valid route name (letters, digits, '.', '_' and '-', up to 100, used in metrics and /drain?route=)", clip(s))
					continue
				}
				r.Name = s
			}
		// A bad host or path is still stored, as written, so that it does not
		// look like a duplicate of a route with the default one.
		case "host":
			if s, ok := p.str(f.v); ok && s != "" {
				h, err := normalizeRouteHost(s)
				if err != nil {
					p.errf(f.v.line, f.v.key, "%v", err)
					r.Host = "invalid:" + s
					continue
				}
				r.Host = h
			}
		case "path":
			if s, ok := p.str(f.v); ok {
				if err := checkRoutePath(s); err != nil {
					p.errf(f.v.line, f.v.key, "%v", err)
					r.Path = "invalid:" + s
					continue
				}
				if strings.Contains(s, "//") {
					p.warnf(f.v.line, f.v.key, "path %q has an empty segment (//)", s)
				}
				r.Path = s
			}
		case "strip_prefix":
			r.StripPrefix, _ = p.boolean(f.v)
		case "upstreams":
			haveUpstreams = true
			r.Upstreams = p.upstreams(f.v)
		case "balance":
			if s, ok := p.oneOf(f.v, "round_robin", "least_conn", "ip_hash"); ok {
				r.Balance = s
			}
		case "upstream_tls":
			p.accept(f.v)
			p.upstreamTLS(f.v, &r.UpstreamTLS)
		case "subprotocols":
			seen := map[string]bool{}
			for _, item := range p.items(f.v) {
				s, ok := p.str(item)
				if !ok {
					continue
				}
				switch {
				case !isToken(s):
					p.errf(item.line, item.key, "%q is not a valid subprotocol (an HTTP token: no spaces, commas or quotes)", clip(s))
				case seen[s]:
					p.errf(item.line, item.key, "subprotocol %q is listed twice", s)
				default:
					seen[s] = true
					r.Subprotocols = append(r.Subprotocols, s)
				}
			}
		case "set_headers":
			r.SetHeaders = p.setHeaders(f.v)
		case "allow_plain":
			r.AllowPlain, _ = p.boolean(f.v)
		default:
			p.setting(&own, f)
		}
	}
	if !haveName {
		p.errf(v.line, v.key+".name", "required: every route needs a unique name")
	}
	if !haveUpstreams {
		p.errf(v.line, v.key+".upstreams", "required: at least one upstream (ws://host:port/path or builtin:echo)")
	}
	if r.StripPrefix && r.Path == "/" {
		p.warnf(p.lines[v.key+".strip_prefix"], v.key+".strip_prefix", "has no effect with path \"/\"")
	}
	p.checkUpstreamTLS(v.key, r)
	r.Settings = p.resolveSettings(v.key, defaults, own, v.line)
	return r
}

// normalizeRouteHost lower-cases a route host and checks it is an IP, a DNS
// name, or "*.suffix" with at least two labels in suffix (never "*.com").
func normalizeRouteHost(s string) (string, error) {
	h := strings.TrimSuffix(strings.ToLower(s), ".")
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("host %q: an IPv6 zone is not allowed", clip(s))
		}
		return a.String(), nil
	}
	if strings.Contains(h, ":") {
		return "", fmt.Errorf("host %q must not include a port (routes match on the name only)", clip(s))
	}
	if suffix, ok := strings.CutPrefix(h, "*."); ok {
		if !isDNSName(suffix, false) {
			return "", fmt.Errorf("wildcard host %q: %q is not a valid DNS name", clip(s), clip(suffix))
		}
		if !strings.Contains(suffix, ".") {
			return "", fmt.Errorf("wildcard host %q is too broad: want at least two labels after \"*.\", e.g. *.example.com", clip(s))
		}
		return h, nil
	}
	if strings.Contains(h, "*") {
		return "", fmt.Errorf("host %q: a wildcard must be the whole first label, e.g. *.example.com", clip(s))
	}
	if !isDNSName(h, false) {
		for _, c := range []byte(h) {
			if c >= 0x80 {
				return "", fmt.Errorf("host %q is not a valid DNS name (write an international name in its xn-- form)", clip(s))
			}
		}
		return "", fmt.Errorf("host %q is not a valid DNS name", clip(s))
	}
	return h, nil
}

// isDNSName checks the syntax of a host name: dot-separated labels of 1-63
// letters, digits and inner hyphens (and underscores when allowed, as in
// container service names), at most 253 bytes.
func isDNSName(s string, allowUnderscore bool) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-':
			case c == '_' && allowUnderscore:
			default:
				return false
			}
		}
	}
	return true
}

func checkRoutePath(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty (use \"/\" for every path)")
	case !strings.HasPrefix(s, "/"):
		return fmt.Errorf("path %q must start with \"/\"", clip(s))
	case strings.Contains(s, "?"):
		return fmt.Errorf("path %q must not contain a query (?): routes match on the path only", clip(s))
	case strings.Contains(s, "#"):
		return fmt.Errorf("path %q must not contain a fragment (#)", clip(s))
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("path %q must not contain spaces or control characters", clip(s))
		}
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("path %q must not contain \".\" or \"..\" segments", clip(s))
		}
	}
	return nil
}

func (p *parser) upstreams(v val) []Upstream {
	n := deref(v.n)
	if n != nil && n.Kind == yaml.ScalarNode {
		p.errf(v.line, v.key, "want a list, e.g. [%s]", clip(n.Value))
		return nil
	}
	items := p.items(v)
	if n != nil && n.Kind == yaml.SequenceNode {
		p.accept(v)
		if len(items) == 0 {
			p.errf(v.line, v.key, "required: at least one upstream (ws://host:port/path or builtin:echo)")
		}
	}
	var out []Upstream
	seen := map[string]int{}
	for _, item := range items {
		u := Upstream{Weight: 1}
		urlVal := item
		ok := true
		if in := deref(item.n); in != nil && in.Kind == yaml.MappingNode {
			haveURL := false
			for _, f := range p.fields(item, upstreamKeys) {
				switch f.name {
				case "url":
					urlVal, haveURL = f.v, true
				case "weight":
					w, wok := p.integer(f.v, 1, 1_000_000)
					ok = ok && wok
					u.Weight = int(w)
				}
			}
			if !haveURL {
				p.errf(item.line, item.key+".url", "required: ws://host:port/path or builtin:echo")
				continue
			}
		}
		raw, sok := p.str(urlVal)
		if !sok {
			continue
		}
		parsed, builtin, err := parseUpstreamURL(raw)
		if err != nil {
			p.errf(urlVal.line, urlVal.key, "%v", err)
			continue
		}
		if first, dup := seen[raw]; dup {
			p.errf(urlVal.line, urlVal.key, "upstream %q is listed twice (first at line %d); use weight to favour it", raw, first)
			continue
		}
		seen[raw] = urlVal.line
		if ok {
			u.URL, u.Raw, u.Builtin = parsed, raw, builtin
			out = append(out, u)
		}
	}
	return out
}

// parseUpstreamURL accepts ws:// and wss:// URLs with a host, no user info,
// query or fragment; or exactly "builtin:echo".
func parseUpstreamURL(raw string) (*url.URL, string, error) {
	if name, ok := strings.CutPrefix(raw, "builtin:"); ok {
		if name == "echo" {
			return nil, "echo", nil
		}
		return nil, "", fmt.Errorf("unknown built-in upstream %q (the only one is builtin:echo)", clip(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, "", fmt.Errorf("bad upstream URL %q: %v", clip(raw), err)
	}
	switch {
	case u.Scheme == "http" || u.Scheme == "https":
		return nil, "", fmt.Errorf("upstream URL %q: use ws:// or wss:// (for http or https)", clip(raw))
	case u.Scheme != "ws" && u.Scheme != "wss":
		return nil, "", fmt.Errorf("upstream URL %q: want ws://host:port/path or wss://host/path", clip(raw))
	case u.Opaque != "" || u.Host == "":
		return nil, "", fmt.Errorf("upstream URL %q has no host: want %s://host:port/path", clip(raw), u.Scheme)
	case u.User != nil:
		return nil, "", fmt.Errorf("upstream URL %q must not contain user info (send credentials with set_headers)", clip(raw))
	case u.RawQuery != "" || u.ForceQuery:
		return nil, "", fmt.Errorf("upstream URL %q must not have a query: the client's query string is passed on", clip(raw))
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, "", fmt.Errorf("upstream URL %q must not have a fragment", clip(raw))
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, "", fmt.Errorf("upstream URL %q: port %s is out of range", clip(raw), port)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, "", fmt.Errorf("upstream URL %q: empty port", clip(raw))
	}
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err != nil && !isDNSName(host, true) {
		return nil, "", fmt.Errorf("upstream URL %q: %q is not a valid host", clip(raw), clip(host))
	}
	return u, "", nil
}

func (p *parser) upstreamTLS(v val, t *UpstreamTLS) {
	for _, f := range p.fields(v, upTLSKeys) {
		switch f.name {
		case "ca":
			if s, ok := p.str(f.v); ok && s != "" {
				if err := checkPEMCerts(s); err != nil {
					p.errf(f.v.line, f.v.key, "%v", err)
					continue
				}
				t.CA = s
			}
		case "server_name":
			if s, ok := p.str(f.v); ok && s != "" {
				if _, err := netip.ParseAddr(s); err != nil && !isDNSName(s, true) {
					p.errf(f.v.line, f.v.key, "%q is not a valid host name", clip(s))
					continue
				}
				t.ServerName = s
			}
		case "insecure_skip_verify":
			if b, ok := p.boolean(f.v); ok {
				t.InsecureSkipVerify = b
				if b {
					p.warnf(f.v.line, f.v.key, "upstream certificates are not verified: anyone on the path can read and change the traffic")
				}
			}
		}
	}
}

func (p *parser) checkUpstreamTLS(routeKey string, r *Route) {
	key := routeKey + ".upstream_tls"
	if (r.UpstreamTLS == UpstreamTLS{}) {
		return
	}
	for _, u := range r.Upstreams {
		if u.URL != nil && u.URL.Scheme == "wss" {
			return
		}
	}
	if len(r.Upstreams) > 0 {
		p.warnf(p.lines[key], key, "has no effect: no upstream of this route uses wss://")
	}
}

// Headers that must not be set toward the upstream: hop-by-hop headers
// (RFC 9110 §7.6.1), the handshake's own, and the ones the gateway writes.
var forbiddenSetHeaders = map[string]string{
	"Connection":          "a hop-by-hop header",
	"Keep-Alive":          "a hop-by-hop header",
	"Proxy-Authenticate":  "a hop-by-hop header",
	"Proxy-Authorization": "a hop-by-hop header",
	"Proxy-Connection":    "a hop-by-hop header",
	"Te":                  "a hop-by-hop header",
	"Trailer":             "a hop-by-hop header",
	"Transfer-Encoding":   "a hop-by-hop header",
	"Upgrade":             "a hop-by-hop header",
	"Host":                "taken from the upstream URL",
	"Content-Length":      "part of the handshake request framing",
	"X-Forwarded-For":     "set by the gateway",
	"X-Forwarded-Proto":   "set by the gateway",
	"X-Forwarded-Host":    "set by the gateway",
	"Forwarded":           "set by the gateway",
}

func (p *parser) setHeaders(v val) map[string]string {
	out := map[string]string{}
	firstLine := map[string]int{}
	for _, f := range p.fields(v, nil) {
		name := http.CanonicalHeaderKey(f.name)
		switch {
		case !isToken(f.name):
			p.errf(f.keyLine, f.v.key, "%q is not a valid header name", clip(f.name))
			continue
		case strings.HasPrefix(name, "Sec-Websocket-"):
			p.errf(f.keyLine, f.v.key, "%s cannot be set: the gateway makes its own handshake with the upstream", name)
			continue
		case forbiddenSetHeaders[name] != "":
			p.errf(f.keyLine, f.v.key, "%s cannot be set: it is %s", name, forbiddenSetHeaders[name])
			continue
		}
		if first, dup := firstLine[name]; dup {
			p.errf(f.keyLine, f.v.key, "header %s is set twice (first at line %d)", name, first)
			continue
		}
		firstLine[name] = f.keyLine
		val, ok := p.str(f.v)
		if !ok {
			continue
		}
		for _, c := range []byte(val) {
			if c < ' ' && c != '\t' || c == 0x7f {
				p.errf(f.v.line, f.v.key, "header value must not contain control characters (such as newlines)")
				ok = false
				break
			}
		}
		if ok {
			out[name] = val
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// isToken reports whether s is an RFC 9110 token (header names,
// subprotocols).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// normalizeOrigin checks an origin "scheme://host[:port]" and returns it in
// lower case without a default port. With wildcard, the first label may be
// "*" (followed by at least two labels).
func normalizeOrigin(s string, wildcard bool) (string, error) {
	switch s {
	case "*":
		return "", errors.New(`origin "*" is not a pattern: leave origins empty ([]) to allow any origin`)
	case "null":
		return "", errors.New(`the "null" origin (sandboxed pages, file://) cannot be allowed: any page can send it`)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.Host == "" {
		return "", fmt.Errorf("bad origin %q: want scheme://host[:port], e.g. https://app.example.com", clip(s))
	}
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return "", fmt.Errorf("bad origin %q: an origin is only scheme://host[:port], with no path (not even a trailing /)", clip(s))
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if suffix, ok := strings.CutPrefix(host, "*."); ok && wildcard {
		if !isDNSName(suffix, false) || !strings.Contains(suffix, ".") {
			return "", fmt.Errorf("bad origin %q: a wildcard needs at least two labels after \"*.\", e.g. https://*.example.com", clip(s))
		}
	} else if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("bad origin %q: no IPv6 zone", clip(s))
		}
		host = a.String()
		if a.Is6() {
			host = "[" + host + "]"
		}
	} else if !isDNSName(host, false) {
		return "", fmt.Errorf("bad origin %q: %q is not a valid host", clip(s), clip(host))
	}
	port := u.Port()
	if port == "" && strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("bad origin %q: empty port", clip(s))
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("bad origin %q: port out of range", clip(s))
		}
		port = strconv.Itoa(n)
		if scheme == "http" && n == 80 || scheme == "https" && n == 443 {
			port = ""
		}
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, nil
}

// ServerKeys returns the keys of the `server:` block, in the order of
// ServerConfig's fields.
func ServerKeys() []string { return slices.Clone(serverKeys) }

package config

// The routes: list.

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"wsgate/internal/config/yamlwalk"

	"gopkg.in/yaml.v3"
)

// ---------------------------------------------------------------------------
// routes

var routeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

func (p *parser) routes(v yamlwalk.Val, defaults settingsLayer) []*Route {
	items := p.Items(v)
	if len(items) == 0 {
		if n := yamlwalk.Deref(v.N); n != nil && n.Kind == yaml.SequenceNode {
			p.Errf(v.Line, v.Key, "required: at least one route")
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
			key := item.Key + ".name"
			if first, dup := names[r.Name]; dup {
				p.Errf(p.Lines[key], key, "duplicate route name %q (first used by routes[%d] at line %d)", r.Name, first.idx, first.line)
			} else {
				names[r.Name] = place{i, p.Lines[key]}
			}
		}
		hp := r.Host + "\x00" + r.Path
		key := item.Key + ".path"
		if first, dup := hostPaths[hp]; dup {
			host := r.Host
			if host == "" {
				host = "any host"
			}
			line := p.firstLine(key, item.Key+".host")
			if line == 0 {
				line = r.Line
			}
			p.Errf(line, key, "host %s and path %q are already routed by routes[%d] (line %d)", host, r.Path, first.idx, first.line)
		} else {
			hostPaths[hp] = place{i, r.Line}
		}
	}
	return routes
}

func (p *parser) route(v yamlwalk.Val, defaults settingsLayer) *Route {
	n := yamlwalk.Deref(v.N)
	if n == nil || n.Kind != yaml.MappingNode {
		p.Errf(v.Line, v.Key, "want a route (a mapping with name, path, upstreams...), got %s", yamlwalk.Describe(v.N))
		return nil
	}
	r := &Route{Path: "/", Balance: DefaultBalance, HTTP: DefaultHTTPMode, StickyCookie: DefaultStickyCookie, Line: v.Line, key: v.Key}
	var own settingsLayer
	haveName, haveUpstreams := false, false
	for _, f := range p.Fields(v, routeFieldKeys) {
		switch f.Name {
		case "name":
			haveName = true
			if s, ok := p.Str(f.V); ok {
				if !routeNameRE.MatchString(s) {
					delete(p.Lines, f.V.Key)
					p.Errf(f.V.Line, f.V.Key, "%q is not a valid route name (letters, digits, '.', '_' and '-', up to 100, used in metrics and /drain?route=)", yamlwalk.Clip(s))
					continue
				}
				r.Name = s
			}
		// A bad host or path is still stored, as written, so that it does not
		// look like a duplicate of a route with the default one.
		case "host":
			if s, ok := p.Str(f.V); ok && s != "" {
				h, err := normalizeRouteHost(s)
				if err != nil {
					p.Errf(f.V.Line, f.V.Key, "%v", err)
					r.Host = "invalid:" + s
					continue
				}
				r.Host = h
			}
		case "path":
			if s, ok := p.Str(f.V); ok {
				if err := checkRoutePath(s); err != nil {
					p.Errf(f.V.Line, f.V.Key, "%v", err)
					r.Path = "invalid:" + s
					continue
				}
				if strings.Contains(s, "//") {
					p.Warnf(f.V.Line, f.V.Key, "path %q has an empty segment (//)", s)
				}
				r.Path = s
			}
		case "strip_prefix":
			r.StripPrefix, _ = p.Bool(f.V)
		case "upstreams":
			haveUpstreams = true
			r.Upstreams = p.upstreams(f.V)
		case "balance":
			if s, ok := p.OneOf(f.V, "round_robin", "least_conn", "ip_hash", "cookie"); ok {
				r.Balance = Balance(s)
			}
		case "http":
			if s, ok := p.OneOf(f.V, "reject", "proxy"); ok {
				r.HTTP = HTTPMode(s)
			}
		case "sticky_cookie":
			if s, ok := p.Str(f.V); ok {
				if !isToken(s) || len(s) > 64 {
					p.Errf(f.V.Line, f.V.Key, "%q is not a valid cookie name (an HTTP token of up to 64 characters: letters, digits and !#$%%&'*+-.^_`|~)", yamlwalk.Clip(s))
					continue
				}
				r.StickyCookie = s
			}
		case "upstream_tls":
			p.Accept(f.V)
			p.upstreamTLS(f.V, &r.UpstreamTLS)
		case "subprotocols":
			seen := map[string]bool{}
			for _, item := range p.Items(f.V) {
				s, ok := p.Str(item)
				if !ok {
					continue
				}
				switch {
				case !isToken(s):
					p.Errf(item.Line, item.Key, "%q is not a valid subprotocol (an HTTP token: no spaces, commas or quotes)", yamlwalk.Clip(s))
				case seen[s]:
					p.Errf(item.Line, item.Key, "subprotocol %q is listed twice", s)
				default:
					seen[s] = true
					r.Subprotocols = append(r.Subprotocols, s)
				}
			}
		case "set_headers":
			r.SetHeaders = p.setHeaders(f.V)
		case "allow_plain":
			r.AllowPlain, _ = p.Bool(f.V)
		default:
			p.setting(&own, f)
		}
	}
	if !haveName {
		p.Errf(v.Line, v.Key+".name", "required: every route needs a unique name")
	}
	if !haveUpstreams {
		p.Errf(v.Line, v.Key+".upstreams", "required: at least one upstream (ws://host:port/path or builtin:echo)")
	}
	if r.StripPrefix && r.Path == "/" {
		p.Warnf(p.Lines[v.Key+".strip_prefix"], v.Key+".strip_prefix", "has no effect with path \"/\"")
	}
	p.checkUpstreamTLS(v.Key, r)
	p.checkHTTP(v.Key, r)
	r.Settings = p.resolveSettings(v.Key, defaults, own, v.Line)
	return r
}

// normalizeRouteHost lower-cases a route host and checks it is an IP, a DNS
// name, or "*.suffix" with at least two labels in suffix (never "*.com").
func normalizeRouteHost(s string) (string, error) {
	h := strings.TrimSuffix(strings.ToLower(s), ".")
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("host %q: an IPv6 zone is not allowed", yamlwalk.Clip(s))
		}
		return a.String(), nil
	}
	if strings.Contains(h, ":") {
		return "", fmt.Errorf("host %q must not include a port (routes match on the name only)", yamlwalk.Clip(s))
	}
	if suffix, ok := strings.CutPrefix(h, "*."); ok {
		if !isDNSName(suffix, false) {
			return "", fmt.Errorf("wildcard host %q: %q is not a valid DNS name", yamlwalk.Clip(s), yamlwalk.Clip(suffix))
		}
		if !strings.Contains(suffix, ".") {
			return "", fmt.Errorf("wildcard host %q is too broad: want at least two labels after \"*.\", e.g. *.example.com", yamlwalk.Clip(s))
		}
		return h, nil
	}
	if strings.Contains(h, "*") {
		return "", fmt.Errorf("host %q: a wildcard must be the whole first label, e.g. *.example.com", yamlwalk.Clip(s))
	}
	if !isDNSName(h, false) {
		for _, c := range []byte(h) {
			if c >= 0x80 {
				return "", fmt.Errorf("host %q is not a valid DNS name (write an international name in its xn-- form)", yamlwalk.Clip(s))
			}
		}
		return "", fmt.Errorf("host %q is not a valid DNS name", yamlwalk.Clip(s))
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
		return fmt.Errorf("path %q must start with \"/\"", yamlwalk.Clip(s))
	case strings.Contains(s, "?"):
		return fmt.Errorf("path %q must not contain a query (?): routes match on the path only", yamlwalk.Clip(s))
	case strings.Contains(s, "#"):
		return fmt.Errorf("path %q must not contain a fragment (#)", yamlwalk.Clip(s))
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("path %q must not contain spaces or control characters", yamlwalk.Clip(s))
		}
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("path %q must not contain \".\" or \"..\" segments", yamlwalk.Clip(s))
		}
	}
	return nil
}

func (p *parser) upstreams(v yamlwalk.Val) []Upstream {
	n := yamlwalk.Deref(v.N)
	if n != nil && n.Kind == yaml.ScalarNode {
		p.Errf(v.Line, v.Key, "want a list, e.g. [%s]", yamlwalk.Clip(n.Value))
		return nil
	}
	items := p.Items(v)
	if n != nil && n.Kind == yaml.SequenceNode {
		p.Accept(v)
		if len(items) == 0 {
			p.Errf(v.Line, v.Key, "required: at least one upstream (ws://host:port/path or builtin:echo)")
		}
	}
	var out []Upstream
	seen := map[string]int{}
	for _, item := range items {
		u := Upstream{Weight: 1}
		urlVal := item
		ok := true
		if in := yamlwalk.Deref(item.N); in != nil && in.Kind == yaml.MappingNode {
			haveURL := false
			for _, f := range p.Fields(item, upstreamKeys) {
				switch f.Name {
				case "url":
					urlVal, haveURL = f.V, true
				case "weight":
					w, wok := p.Int(f.V, 1, 1_000_000)
					ok = ok && wok
					u.Weight = int(w)
				}
			}
			if !haveURL {
				p.Errf(item.Line, item.Key+".url", "required: ws://host:port/path or builtin:echo")
				continue
			}
		}
		raw, sok := p.Str(urlVal)
		if !sok {
			continue
		}
		parsed, builtin, err := parseUpstreamURL(raw)
		if err != nil {
			p.Errf(urlVal.Line, urlVal.Key, "%v", err)
			continue
		}
		// ws:// and http:// name the same server: listed both ways, it is
		// listed twice.
		same := raw
		if parsed != nil {
			same = parsed.String()
		}
		if first, dup := seen[same]; dup {
			p.Errf(urlVal.Line, urlVal.Key, "upstream %q is listed twice (first at line %d); use weight to favour it", raw, first)
			continue
		}
		seen[same] = urlVal.Line
		if ok {
			u.URL, u.Raw, u.Builtin = parsed, raw, builtin
			out = append(out, u)
		}
	}
	return out
}

// parseUpstreamURL accepts ws://, wss://, http:// and https:// URLs with a
// host, no user info, query or fragment; or exactly "builtin:echo". An
// upstream URL names a server, not a protocol: the URL returned has the
// scheme ws (for ws and http) or wss (for wss and https), and HTTP requests
// go to the same server as http(s)://.
func parseUpstreamURL(raw string) (*url.URL, string, error) {
	if name, ok := strings.CutPrefix(raw, "builtin:"); ok {
		if name == "echo" {
			return nil, "echo", nil
		}
		return nil, "", fmt.Errorf("unknown built-in upstream %q (the only one is builtin:echo)", yamlwalk.Clip(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, "", fmt.Errorf("bad upstream URL %q: %v", yamlwalk.Clip(raw), err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	switch {
	case u.Scheme != "ws" && u.Scheme != "wss":
		return nil, "", fmt.Errorf("upstream URL %q: want ws://host:port/path, wss://host/path, http://host:port/path or https://host/path", yamlwalk.Clip(raw))
	case u.Opaque != "" || u.Host == "":
		return nil, "", fmt.Errorf("upstream URL %q has no host: want %s://host:port/path", yamlwalk.Clip(raw), u.Scheme)
	case u.User != nil:
		return nil, "", fmt.Errorf("upstream URL %q must not contain user info (send credentials with set_headers)", yamlwalk.Clip(raw))
	case u.RawQuery != "" || u.ForceQuery:
		return nil, "", fmt.Errorf("upstream URL %q must not have a query: the client's query string is passed on", yamlwalk.Clip(raw))
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, "", fmt.Errorf("upstream URL %q must not have a fragment", yamlwalk.Clip(raw))
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, "", fmt.Errorf("upstream URL %q: port %s is out of range", yamlwalk.Clip(raw), port)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, "", fmt.Errorf("upstream URL %q: empty port", yamlwalk.Clip(raw))
	}
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err != nil && !isDNSName(host, true) {
		return nil, "", fmt.Errorf("upstream URL %q: %q is not a valid host", yamlwalk.Clip(raw), yamlwalk.Clip(host))
	}
	return u, "", nil
}

func (p *parser) upstreamTLS(v yamlwalk.Val, t *UpstreamTLS) {
	for _, f := range p.Fields(v, upTLSKeys) {
		switch f.Name {
		case "ca":
			if s, ok := p.Str(f.V); ok && s != "" {
				if err := checkPEMCerts(s); err != nil {
					p.Errf(f.V.Line, f.V.Key, "%v", err)
					continue
				}
				t.CA = s
			}
		case "server_name":
			if s, ok := p.Str(f.V); ok && s != "" {
				if _, err := netip.ParseAddr(s); err != nil && !isDNSName(s, true) {
					p.Errf(f.V.Line, f.V.Key, "%q is not a valid host name", yamlwalk.Clip(s))
					continue
				}
				t.ServerName = s
			}
		case "insecure_skip_verify":
			if b, ok := p.Bool(f.V); ok {
				t.InsecureSkipVerify = b
				if b {
					p.Warnf(f.V.Line, f.V.Key, "upstream certificates are not verified: anyone on the path can read and change the traffic")
				}
			}
		}
	}
}

// checkHTTP checks the route's HTTP keys against each other: a proxied
// route needs upstreams that speak HTTP, and a sticky cookie only means
// something with balance: cookie.
func (p *parser) checkHTTP(routeKey string, r *Route) {
	if r.HTTP == HTTPProxy {
		for i, u := range r.Upstreams {
			if u.Builtin != "" {
				key := fmt.Sprintf("%s.upstreams[%d]", routeKey, i)
				line := p.firstLine(key, key+".url", routeKey+".http")
				p.Errf(line, key, "builtin:%s answers WebSocket only: a route with http: proxy needs http(s):// or ws(s):// upstreams", u.Builtin)
			}
		}
	}
	if key := routeKey + ".sticky_cookie"; r.Balance != Cookie {
		if line, ok := p.Lines[key]; ok {
			p.Warnf(line, key, "has no effect without balance: cookie")
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
		p.Warnf(p.Lines[key], key, "has no effect: no upstream of this route uses wss://")
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

func (p *parser) setHeaders(v yamlwalk.Val) map[string]string {
	out := map[string]string{}
	firstLine := map[string]int{}
	for _, f := range p.Fields(v, nil) {
		name := http.CanonicalHeaderKey(f.Name)
		switch {
		case !isToken(f.Name):
			p.Errf(f.KeyLine, f.V.Key, "%q is not a valid header name", yamlwalk.Clip(f.Name))
			continue
		case strings.HasPrefix(name, "Sec-Websocket-"):
			p.Errf(f.KeyLine, f.V.Key, "%s cannot be set: the gateway makes its own handshake with the upstream", name)
			continue
		case forbiddenSetHeaders[name] != "":
			p.Errf(f.KeyLine, f.V.Key, "%s cannot be set: it is %s", name, forbiddenSetHeaders[name])
			continue
		}
		if first, dup := firstLine[name]; dup {
			p.Errf(f.KeyLine, f.V.Key, "header %s is set twice (first at line %d)", name, first)
			continue
		}
		firstLine[name] = f.KeyLine
		val, ok := p.Str(f.V)
		if !ok {
			continue
		}
		for _, c := range []byte(val) {
			if c < ' ' && c != '\t' || c == 0x7f {
				p.Errf(f.V.Line, f.V.Key, "header value must not contain control characters (such as newlines)")
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
		return "", fmt.Errorf("bad origin %q: want scheme://host[:port], e.g. https://app.example.com", yamlwalk.Clip(s))
	}
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return "", fmt.Errorf("bad origin %q: an origin is only scheme://host[:port], with no path (not even a trailing /)", yamlwalk.Clip(s))
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if suffix, ok := strings.CutPrefix(host, "*."); ok && wildcard {
		if !isDNSName(suffix, false) || !strings.Contains(suffix, ".") {
			return "", fmt.Errorf("bad origin %q: a wildcard needs at least two labels after \"*.\", e.g. https://*.example.com", yamlwalk.Clip(s))
		}
	} else if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("bad origin %q: no IPv6 zone", yamlwalk.Clip(s))
		}
		host = a.String()
		if a.Is6() {
			host = "[" + host + "]"
		}
	} else if !isDNSName(host, false) {
		return "", fmt.Errorf("bad origin %q: %q is not a valid host", yamlwalk.Clip(s), yamlwalk.Clip(host))
	}
	port := u.Port()
	if port == "" && strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("bad origin %q: empty port", yamlwalk.Clip(s))
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("bad origin %q: port out of range", yamlwalk.Clip(s))
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

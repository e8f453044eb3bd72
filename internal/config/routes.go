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

	"gopkg.in/yaml.v3"
)

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
				r.Balance = Balance(s)
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

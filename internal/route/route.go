package route

import (
	"cmp"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
)

// Key is what the router needs to know of one configured route.
type Key struct {
	// Host is "" (any host), an exact name ("chat.example.com") or a
	// wildcard ("*.example.com": one or more labels in front of
	// example.com, never the apex itself). It is compared without case and
	// without a trailing dot. An IPv6 literal may be written with or without
	// brackets; it is compared as written (lowercased), not canonicalised.
	Host string
	// Path is a prefix of the request path, starting with "/", already
	// clean (CleanPath(Path) == Path). See Router for how it matches.
	Path string
	// Index is returned by Match; it is the caller's route number.
	Index int
}

// Router picks the route for a handshake from its Host header and URL path.
//
// Precedence (docs/operations.md "Config files and validation", routes): an exact host beats a wildcard host,
// which beats routes without a host; among wildcards the longest suffix wins
// ("*.eu.example.com" before "*.example.com"). Within that host, the longest
// path prefix that matches on a segment boundary wins.
//
// When the best host has no route whose path matches, Match falls back to the
// next host in that order: exact, then each matching wildcard from the most to
// the least specific, then the routes without a host. So a host-less "/" route
// is a catch-all even for hosts that have routes of their own.
//
// A prefix matches the request path when they are equal, or when the path
// continues after the prefix with "/": "/ws" matches "/ws", "/ws/" and
// "/ws/a" but not "/wsx". A prefix written with a trailing slash is taken as
// written: "/api/" matches "/api/" and "/api/x" but not "/api" (that needs its
// own "/api" route; "/api" and "/api/" are distinct routes). "/" matches
// every path.
//
// Match is safe for concurrent use; a Router is immutable once built.
type Router struct {
	exact map[string]*pathSet
	wild  map[string]*pathSet // keyed by the suffix after "*."
	none  *pathSet            // routes without a host; nil if there are none
}

// maxHostLen is the longest DNS name (RFC 1035 §2.3.4, without the trailing
// dot). Longer request hosts cannot match a host route; Match lowercases
// hosts into a stack buffer of this size so that it does not allocate.
const maxHostLen = 253

// New builds a Router. It rejects a key whose host or path is malformed
// and the same host and path given twice (after the host is lowercased and
// its trailing dot removed).
func New(keys []Key) (*Router, error) {
	r := &Router{
		exact: make(map[string]*pathSet),
		wild:  make(map[string]*pathSet),
	}
	type hostPath struct{ host, path string }
	seen := make(map[hostPath]int, len(keys))
	for _, k := range keys {
		host, wildcard, err := normalizeKeyHost(k.Host)
		if err != nil {
			return nil, fmt.Errorf("route %d: %w", k.Index, err)
		}
		if err := checkKeyPath(k.Path); err != nil {
			return nil, fmt.Errorf("route %d: %w", k.Index, err)
		}
		hp := hostPath{host, k.Path}
		if wildcard {
			hp.host = "*." + host
		}
		if prev, dup := seen[hp]; dup {
			return nil, fmt.Errorf("route %d: host %q path %q is the same as route %d", k.Index, k.Host, k.Path, prev)
		}
		seen[hp] = k.Index

		var s *pathSet
		switch {
		case host == "":
			if r.none == nil {
				r.none = &pathSet{}
			}
			s = r.none
		case wildcard:
			s = setFor(r.wild, host)
		default:
			s = setFor(r.exact, host)
		}
		s.entries = append(s.entries, pathEntry{prefix: k.Path, index: k.Index})
	}
	r.none.build()
	for _, s := range r.exact {
		s.build()
	}
	for _, s := range r.wild {
		s.build()
	}
	return r, nil
}

func setFor(m map[string]*pathSet, host string) *pathSet {
	s := m[host]
	if s == nil {
		s = &pathSet{}
		m[host] = s
	}
	return s
}

// normalizeKeyHost lowercases a configured host, removes a trailing dot and
// IPv6 brackets, and splits off the "*." of a wildcard.
func normalizeKeyHost(h string) (host string, wildcard bool, err error) {
	if h == "" {
		return "", false, nil
	}
	orig := h
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if strings.HasPrefix(h, "*.") {
		wildcard = true
		h = h[2:]
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") && !wildcard {
		h = h[1 : len(h)-1]
		if _, err := netip.ParseAddr(h); err != nil || !strings.Contains(h, ":") {
			return "", false, fmt.Errorf("host %q: bracketed host is not an IPv6 address", orig)
		}
		return h, false, nil
	}
	switch {
	case h == "":
		return "", false, fmt.Errorf("host %q: empty name", orig)
	case len(h) > maxHostLen:
		return "", false, fmt.Errorf("host %q: longer than %d bytes", orig, maxHostLen)
	case strings.Contains(h, "*"):
		return "", false, fmt.Errorf("host %q: a wildcard is only allowed as a whole first label (\"*.example.com\")", orig)
	case strings.ContainsAny(h, "/ \t[]@?#%\\"):
		return "", false, fmt.Errorf("host %q: not a host name", orig)
	case strings.Contains(h, ":"):
		if _, err := netip.ParseAddr(h); err != nil || wildcard {
			return "", false, fmt.Errorf("host %q: must not carry a port", orig)
		}
	case strings.IndexFunc(h, func(c rune) bool { return c >= 0x80 || c < 0x20 }) >= 0:
		return "", false, fmt.Errorf("host %q: not ASCII (write an internationalised name in its xn-- form)", orig)
	case strings.HasPrefix(h, ".") || strings.Contains(h, ".."):
		return "", false, fmt.Errorf("host %q: empty label", orig)
	}
	return h, wildcard, nil
}

func checkKeyPath(p string) error {
	if p == "" || p[0] != '/' {
		return fmt.Errorf("path %q: must start with \"/\"", p)
	}
	if c := CleanPath(p); c != p {
		return fmt.Errorf("path %q: not clean (did you mean %q?)", p, c)
	}
	return nil
}

// pathEntry is one route prefix of a host.
type pathEntry struct {
	prefix string
	index  int
}

// pathSet holds the route prefixes of one host, longest first. Small sets
// are scanned; large ones are looked up segment by segment in byPrefix.
type pathSet struct {
	entries  []pathEntry
	byPrefix map[string]int
}

// linearMax is the size up to which a scan beats hashing every candidate
// prefix of the request path.
const linearMax = 8

func (s *pathSet) build() {
	if s == nil {
		return
	}
	slices.SortStableFunc(s.entries, func(a, b pathEntry) int {
		return cmp.Compare(len(b.prefix), len(a.prefix))
	})
	s.byPrefix = make(map[string]int, len(s.entries))
	for _, e := range s.entries {
		s.byPrefix[e.prefix] = e.index
	}
}

func (s *pathSet) match(p string) (int, bool) {
	if s == nil {
		return 0, false
	}
	if len(s.entries) <= linearMax {
		return s.matchLinear(p)
	}
	return s.matchMap(p)
}

func (s *pathSet) matchLinear(p string) (int, bool) {
	for _, e := range s.entries {
		if prefixMatches(e.prefix, p) {
			return e.index, true
		}
	}
	return 0, false
}

// matchMap tries every prefix of p that ends on a segment boundary, longest
// first: p itself, then for each "/" from the right the prefix including it
// (a route written with a trailing slash) and the prefix before it.
func (s *pathSet) matchMap(p string) (int, bool) {
	if i, ok := s.byPrefix[p]; ok {
		return i, true
	}
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != '/' {
			continue
		}
		if i+1 < len(p) {
			if idx, ok := s.byPrefix[p[:i+1]]; ok {
				return idx, true
			}
		}
		if i > 0 {
			if idx, ok := s.byPrefix[p[:i]]; ok {
				return idx, true
			}
		}
	}
	return 0, false
}

// prefixMatches reports whether route prefix matches request path p on a
// segment boundary.
func prefixMatches(prefix, p string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || prefix[len(prefix)-1] == '/' || p[len(prefix)] == '/'
}

// Match returns the Index of the route for a request. host is the Host header
// as received: a port, upper case, a trailing dot and IPv6 brackets are
// ignored. reqPath is the request's URL path as net/url decoded it
// (r.URL.Path); Match does no further decoding, and matches CleanPath(reqPath),
// so "/ws/../admin" is routed as "/admin". The caller must forward that same
// cleaned path upstream, or a route's upstream could be reached with a path
// that escapes the route's prefix.
//
// Match does not allocate unless reqPath needs cleaning.
func (r *Router) Match(host, reqPath string) (index int, ok bool) {
	p := CleanPath(reqPath)
	var buf [maxHostLen]byte
	h, fits := lowerHost(buf[:0], host)
	if fits && len(h) > 0 {
		if i, ok := r.exact[string(h)].match(p); ok {
			return i, true
		}
		if len(r.wild) > 0 {
			// Every suffix after a dot, longest (most specific) first.
			// Starting after the first dot keeps at least one label in
			// front, so "*.example.com" never matches "example.com".
			for j := 0; j < len(h); j++ {
				if h[j] != '.' || j == 0 {
					continue
				}
				if i, ok := r.wild[string(h[j+1:])].match(p); ok {
					return i, true
				}
			}
		}
	}
	return r.none.match(p)
}

// lowerHost appends the host part of a Host header value to dst, lowercased,
// without port, IPv6 brackets or trailing dot. It reports false if that does
// not fit in dst's capacity (such a host is not a DNS name).
func lowerHost(dst []byte, host string) ([]byte, bool) {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[1:i]
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i+1:], ':') < 0 {
		host = host[:i] // exactly one colon: name:port (a bare IPv6 address has several)
	}
	host = strings.TrimSuffix(host, ".")
	if len(host) > cap(dst) {
		return dst, false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

// CleanPath returns the canonical form of a request path, with the semantics
// of path.Clean but keeping a trailing slash: "" -> "/", "/a//b/./c/.." ->
// "/a/b", "/ws/../admin" -> "/admin", "/ws/" -> "/ws/". A path that is
// already clean is returned as is, without allocating.
func CleanPath(p string) string {
	if isClean(p) {
		return p
	}
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	c := path.Clean(p)
	if p[len(p)-1] == '/' && c != "/" {
		c += "/"
	}
	return c
}

// isClean reports whether p starts with "/" and has no empty, "." or ".."
// segment except a final empty one (a trailing slash).
func isClean(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		seg := p[start:i]
		switch {
		case seg == "." || seg == "..":
			return false
		case seg == "" && i < len(p):
			return false // "//"
		}
		start = i + 1
	}
	return true
}

// StripPrefix removes a matched route prefix from a (clean) request path; the
// result always starts with "/": StripPrefix("/ws/a", "/ws") is "/a",
// StripPrefix("/ws", "/ws") and StripPrefix("/ws/", "/ws") are "/",
// StripPrefix("/api/x", "/api/") is "/x". If prefix does not match p on a
// segment boundary, p is returned unchanged.
func StripPrefix(p, prefix string) string {
	if prefix == "" || !prefixMatches(prefix, p) {
		return p
	}
	if prefix[len(prefix)-1] == '/' {
		return p[len(prefix)-1:] // keep the prefix's own slash
	}
	if len(p) == len(prefix) {
		return "/"
	}
	return p[len(prefix):]
}

// JoinPath joins an upstream URL's path and the request path (after
// StripPrefix, if the route strips) with exactly one slash between them:
// ("/ws", "/a") -> "/ws/a", ("/base/", "/x") -> "/base/x", ("", "/a") -> "/a".
// A request path of "/" (or "") means the upstream path itself: ("/ws", "/")
// -> "/ws", ("/", "/") -> "/", ("", "/") -> "/". So with strip_prefix, a
// request for exactly the route prefix reaches exactly the configured upstream
// path.
func JoinPath(base, reqPath string) string {
	if base == "" || base == "/" {
		if reqPath == "" || reqPath[0] != '/' {
			return "/" + reqPath
		}
		return reqPath
	}
	if base[0] != '/' {
		base = "/" + base
	}
	if reqPath == "" || reqPath == "/" {
		return base
	}
	if base[len(base)-1] == '/' {
		return base + strings.TrimPrefix(reqPath, "/")
	}
	if reqPath[0] != '/' {
		return base + "/" + reqPath
	}
	return base + reqPath
}

package route

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// routerKeys is the route table shared by the Match tests and FuzzMatch.
// Index i is the key's position, so a failure names the route directly.
var routerKeys = []Key{
	{Host: "", Path: "/", Index: 0},
	{Host: "", Path: "/ws", Index: 1},
	{Host: "", Path: "/ws/chat", Index: 2},
	{Host: "", Path: "/api/", Index: 3},
	{Host: "chat.example.com", Path: "/ws", Index: 4},
	{Host: "chat.example.com", Path: "/ws/admin", Index: 5},
	{Host: "*.example.com", Path: "/ws", Index: 6},
	{Host: "*.example.com", Path: "/live", Index: 7},
	{Host: "*.eu.example.com", Path: "/ws", Index: 8},
	{Host: "Exact.Example.ORG.", Path: "/", Index: 9}, // normalised by New
	{Host: "::1", Path: "/v6", Index: 10},
	{Host: "[2001:db8::1]", Path: "/v6", Index: 11},
	{Host: "10.0.0.1", Path: "/ip", Index: 12},
	{Host: "*.com", Path: "/tld", Index: 13},
	{Host: "api.example.com", Path: "/api", Index: 14},
	{Host: "api.example.com", Path: "/api/", Index: 15},
}

func mustRouter(t testing.TB, keys []Key) *Router {
	t.Helper()
	r, err := New(keys)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRouterMatch(t *testing.T) {
	t.Parallel()
	r := mustRouter(t, routerKeys)
	const none = -1
	tests := []struct {
		name, host, path string
		want             int
	}{
		// docs/operations.md "Config files and validation", routes: "exact host > wildcard host > no host".
		{"exact host", "chat.example.com", "/ws", 4},
		{"wildcard host", "other.example.com", "/ws", 6},
		{"no host", "unknown.test", "/ws", 1},
		{"no Host header", "", "/ws", 1},
		// "then the longest path prefix, on segment boundaries (/ws does
		// not match /wsx)".
		{"longest prefix", "chat.example.com", "/ws/admin/x", 5},
		{"shorter prefix", "chat.example.com", "/ws/other", 4},
		{"segment boundary exact", "x.test", "/ws", 1},
		{"segment boundary slash", "x.test", "/ws/", 1},
		{"segment boundary below", "x.test", "/ws/a", 1},
		{"not a segment boundary", "x.test", "/wsx", 0},
		{"not a segment boundary deeper", "x.test", "/ws/chatty", 1},
		{"deeper prefix", "x.test", "/ws/chat/room/1", 2},
		{"root catches all", "x.test", "/anything/at/all", 0},
		{"empty path is root", "x.test", "", 0},
		// A prefix with a trailing slash is taken as written.
		{"trailing-slash prefix below", "x.test", "/api/v1", 3},
		{"trailing-slash prefix itself", "x.test", "/api/", 3},
		{"trailing-slash prefix without slash", "x.test", "/api", 0},
		{"both forms: without slash", "api.example.com", "/api", 14},
		{"both forms: with slash", "api.example.com", "/api/", 15},
		{"both forms: below", "api.example.com", "/api/x", 15},
		// Wildcards: "one or more labels, not the apex".
		{"wildcard one label", "a.example.com", "/live", 7},
		{"wildcard two labels", "a.b.example.com", "/live", 7},
		{"wildcard apex excluded", "example.com", "/live", 0},
		{"wildcard apex excluded falls to no host", "example.com", "/ws", 1},
		{"wildcard empty label", ".example.com", "/live", 0},
		{"most specific wildcard", "x.eu.example.com", "/ws", 8},
		{"specific wildcard apex is not its own match", "eu.example.com", "/ws", 6},
		{"tld wildcard", "example.com", "/tld", 13},
		// Host header forms: port, case, trailing dot, IPv6 literal.
		{"port", "chat.example.com:8443", "/ws", 4},
		{"upper case", "CHAT.Example.COM", "/ws", 4},
		{"trailing dot", "chat.example.com.", "/ws", 4},
		{"trailing dot and port", "chat.example.com.:80", "/ws", 4},
		{"upper case wildcard", "A.B.EXAMPLE.COM:443", "/live", 7},
		{"normalised key", "exact.example.org", "/x", 9},
		{"ipv6 literal with port", "[::1]:8080", "/v6", 10},
		{"ipv6 literal without port", "[::1]", "/v6/x", 10},
		{"bare ipv6", "::1", "/v6", 10},
		{"bracketed key", "[2001:DB8::1]:443", "/v6", 11},
		{"ipv4 with port", "10.0.0.1:80", "/ip", 12},
		{"ipv4 is no wildcard match", "10.0.0.1", "/live", 0},
		// Cleaning: "/ws/../admin" is routed as "/admin".
		{"dot-dot leaves prefix", "x.test", "/ws/../api/x", 3},
		{"dot-dot inside prefix", "chat.example.com", "/ws/x/../admin", 5},
		{"double slash", "x.test", "//ws//chat", 2},
		{"dot segment", "x.test", "/ws/./chat", 2},
		{"dot-dot above root", "x.test", "/../../ws", 1},
		{"no percent-decoding", "x.test", "/ws%2Fchat", 0},
		{"relative path", "x.test", "ws/chat", 2},
		{"host longer than a DNS name", strings.Repeat("a", 300) + ".example.com", "/live", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := r.Match(tt.host, tt.path)
			if !ok {
				got = none
			}
			if got != tt.want {
				t.Errorf("Match(%q, %q) = %d, want %d", tt.host, tt.path, got, tt.want)
			}
		})
	}
}

// TestRouterFallback: when the best host has no route for the path, the next
// class is tried (exact -> wildcard, most specific first -> no host), and
// without a host-less route the answer is 404 (docs/handshake.md:
// "no route for host+path | 404").
func TestRouterFallback(t *testing.T) {
	t.Parallel()
	r := mustRouter(t, []Key{
		{Host: "a.example.com", Path: "/exact", Index: 0},
		{Host: "*.a.example.com", Path: "/inner", Index: 1},
		{Host: "*.example.com", Path: "/outer", Index: 2},
		{Host: "*.example.com", Path: "/exact", Index: 3},
		{Host: "", Path: "/nohost", Index: 4},
	})
	tests := []struct {
		host, path string
		want       int
		ok         bool
	}{
		{"a.example.com", "/exact", 0, true},
		{"a.example.com", "/outer", 2, true},  // exact -> wildcard
		{"a.example.com", "/nohost", 4, true}, // exact -> no host
		{"x.a.example.com", "/inner", 1, true},
		{"x.a.example.com", "/outer", 2, true}, // specific -> broader wildcard
		{"x.a.example.com", "/exact", 3, true}, // exact host does not apply
		{"x.a.example.com", "/nohost", 4, true},
		{"b.example.com", "/inner", 0, false},
		{"other.test", "/exact", 0, false},
		{"other.test", "/nohost/x", 4, true},
	}
	for _, tt := range tests {
		got, ok := r.Match(tt.host, tt.path)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("Match(%q, %q) = %d, %v; want %d, %v", tt.host, tt.path, got, ok, tt.want, tt.ok)
		}
	}

	empty := mustRouter(t, nil)
	if i, ok := empty.Match("x", "/"); ok {
		t.Errorf("empty router matched route %d", i)
	}
}

func TestNewRouterErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		keys []Key
		want string // substring of the error
	}{
		// docs/operations.md "Config files and validation", routes: "the same host+path twice is a config error".
		{"duplicate", []Key{{Host: "a.test", Path: "/ws", Index: 3}, {Host: "a.test", Path: "/ws", Index: 7}}, "route 7: host \"a.test\" path \"/ws\" is the same as route 3"},
		{"duplicate after case and dot", []Key{{Host: "a.test", Path: "/ws"}, {Host: "A.Test.", Path: "/ws", Index: 1}}, "same as route 0"},
		{"duplicate no host", []Key{{Path: "/"}, {Path: "/", Index: 1}}, "same as route 0"},
		{"duplicate wildcard", []Key{{Host: "*.a.test", Path: "/"}, {Host: "*.A.test", Path: "/", Index: 1}}, "same as route 0"},
		{"duplicate ipv6", []Key{{Host: "::1", Path: "/"}, {Host: "[::1]", Path: "/", Index: 1}}, "same as route 0"},
		{"empty path", []Key{{Host: "a.test"}}, "must start with"},
		{"relative path", []Key{{Path: "ws"}}, "must start with"},
		{"unclean path", []Key{{Path: "/ws//x"}}, `did you mean "/ws/x"`},
		{"dot-dot path", []Key{{Path: "/ws/.."}}, "not clean"},
		{"port", []Key{{Host: "a.test:8080", Path: "/"}}, "port"},
		{"wildcard in the middle", []Key{{Host: "a.*.test", Path: "/"}}, "wildcard"},
		{"bare star", []Key{{Host: "*", Path: "/"}}, "wildcard"},
		{"star dot", []Key{{Host: "*.", Path: "/"}}, "wildcard"},
		{"star dot dot", []Key{{Host: "*..", Path: "/"}}, "empty name"},
		{"partial label wildcard", []Key{{Host: "*a.test", Path: "/"}}, "wildcard"},
		{"double wildcard", []Key{{Host: "*.*.test", Path: "/"}}, "wildcard"},
		{"empty label", []Key{{Host: "a..test", Path: "/"}}, "empty label"},
		{"leading dot", []Key{{Host: ".test", Path: "/"}}, "empty label"},
		{"slash", []Key{{Host: "a.test/x", Path: "/"}}, "not a host name"},
		{"bad brackets", []Key{{Host: "[a.test]", Path: "/"}}, "IPv6"},
		{"non-ASCII", []Key{{Host: "bücher.test", Path: "/"}}, "xn--"},
		{"too long", []Key{{Host: strings.Repeat("a.", 127) + "test", Path: "/"}}, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.keys)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestRouterLargeSets runs the per-host map lookup (more than linearMax
// prefixes) against the linear scan on the same table.
func TestRouterLargeSets(t *testing.T) {
	t.Parallel()
	var keys []Key
	prefixes := []string{"/", "/a", "/a/", "/a/b", "/a/b/", "/a/b/c", "/ab", "/b", "/b/c/", "/c/d/e/f", "/x", "/x/y"}
	for i, p := range prefixes {
		keys = append(keys, Key{Host: "big.test", Path: p, Index: i})
	}
	r := mustRouter(t, keys)
	set := r.exact["big.test"]
	if len(set.entries) <= linearMax {
		t.Fatalf("set has %d entries; the test needs more than %d", len(set.entries), linearMax)
	}
	paths := []string{"/", "/a", "/a/", "/a/x", "/a/b", "/a/b/", "/a/bc", "/a/b/c", "/a/b/c/d", "/ab", "/ab/", "/abc", "/b", "/b/", "/b/c", "/b/c/", "/b/c/d", "/c/d/e", "/c/d/e/f/g", "/x/y/z", "/xy", "/zzz"}
	for _, p := range paths {
		li, lok := set.matchLinear(p)
		mi, mok := set.matchMap(p)
		if li != mi || lok != mok {
			t.Errorf("path %q: linear = %d,%v; map = %d,%v", p, li, lok, mi, mok)
		}
		if got, _ := r.Match("big.test", p); got != li {
			t.Errorf("Match(%q) = %d, want %d", p, got, li)
		}
	}
}

func TestRouterCleanPath(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/ws", "/ws"},
		{"/ws/", "/ws/"},
		{"ws", "/ws"},
		{"//", "/"},
		{"/ws//a", "/ws/a"},
		{"/ws/./a", "/ws/a"},
		{"/ws/.", "/ws"},
		{"/ws/./", "/ws/"},
		{"/ws/..", "/"},
		{"/ws/../", "/"},
		{"/ws/../admin", "/admin"},
		{"/../..", "/"},
		{"/a/b/../../c/", "/c/"},
		{"/.ws/..ws/...", "/.ws/..ws/..."},
		{"/%2e%2e/x", "/%2e%2e/x"}, // r.URL.Path is decoded once by net/url; no more
	}
	for _, tt := range tests {
		if got := CleanPath(tt.in); got != tt.want {
			t.Errorf("CleanPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRouterStripPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct{ path, prefix, want string }{
		{"/ws/a", "/ws", "/a"},
		{"/ws", "/ws", "/"},
		{"/ws/", "/ws", "/"},
		{"/ws/a/b/", "/ws", "/a/b/"},
		{"/api/x", "/api/", "/x"},
		{"/api/", "/api/", "/"},
		{"/a", "/", "/a"},
		{"/", "/", "/"},
		{"/wsx", "/ws", "/wsx"}, // not a match: unchanged
		{"/other", "/ws", "/other"},
		{"/ws", "", "/ws"},
	}
	for _, tt := range tests {
		if got := StripPrefix(tt.path, tt.prefix); got != tt.want {
			t.Errorf("StripPrefix(%q, %q) = %q, want %q", tt.path, tt.prefix, got, tt.want)
		}
	}
}

// TestRouterJoinPath: the upstream request path is the upstream URL's path
// joined with the request path, the route prefix removed if strip_prefix
// (docs/handshake.md "Request toward the upstream").
func TestRouterJoinPath(t *testing.T) {
	t.Parallel()
	tests := []struct{ base, req, want string }{
		{"/ws", "/a", "/ws/a"},
		{"", "/a", "/a"},
		{"/", "/", "/"},
		{"/base/", "/x", "/base/x"},
		{"/base/", "/x/", "/base/x/"},
		{"/ws", "/", "/ws"},
		{"/ws/", "/", "/ws/"},
		{"", "/", "/"},
		{"", "", "/"},
		{"/", "/a", "/a"},
		{"/ws", "", "/ws"},
		{"/ws", "/ws", "/ws/ws"}, // the example config without strip_prefix
		{"ws", "/a", "/ws/a"},
		{"/ws", "a", "/ws/a"},
		{"/base/", "a", "/base/a"},
	}
	for _, tt := range tests {
		got := JoinPath(tt.base, tt.req)
		if got != tt.want {
			t.Errorf("JoinPath(%q, %q) = %q, want %q", tt.base, tt.req, got, tt.want)
		}
	}
}

func TestRouterMatchAllocs(t *testing.T) {
	r := mustRouter(t, routerKeys)
	cases := []struct{ host, path string }{
		{"chat.example.com", "/ws/admin/x"},
		{"A.B.EXAMPLE.COM:443", "/live/room"},
		{"[::1]:8080", "/v6"},
		{"nowhere.test", "/ws/chat/1"},
	}
	for _, c := range cases {
		if n := testing.AllocsPerRun(100, func() { r.Match(c.host, c.path) }); n != 0 {
			t.Errorf("Match(%q, %q): %v allocations, want 0", c.host, c.path, n)
		}
	}
}

func BenchmarkRouterMatch(b *testing.B) {
	r := mustRouter(b, routerKeys)
	var big []Key
	for i := range 200 {
		big = append(big, Key{Host: "", Path: fmt.Sprintf("/svc%d/ws", i), Index: i})
	}
	rb := mustRouter(b, big)
	for _, bc := range []struct {
		name, host, path string
		r                *Router
	}{
		{"exact", "chat.example.com", "/ws/admin", r},
		{"wildcard/port/upper", "A.B.EU.EXAMPLE.COM:443", "/ws/room/42", r},
		{"fallback", "nowhere.test", "/ws/chat/1", r},
		{"200-routes", "x.test", "/svc150/ws/room/42", rb},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.r.Match(bc.host, bc.path)
			}
		})
	}
}

// refMatch is the routing rule written the slow, obvious way: among the keys
// whose host accepts h and whose prefix matches p, pick the best by (host
// class, wildcard suffix length, prefix length). h is already normalised.
func refMatch(keys []Key, h, p string) (int, bool) {
	best, bestRank := -1, [3]int{}
	for _, k := range keys {
		host := strings.ToLower(strings.TrimSuffix(strings.Trim(k.Host, "[]"), "."))
		var class, spec int
		switch {
		case host == "":
			class = 2
		case strings.HasPrefix(host, "*."):
			suffix := host[1:] // ".example.com"
			if !strings.HasSuffix(h, suffix) || len(h) <= len(suffix) {
				continue
			}
			class, spec = 1, -len(suffix)
		case host == h:
			class = 0
		default:
			continue
		}
		if !prefixMatches(k.Path, p) {
			continue
		}
		rank := [3]int{class, spec, -len(k.Path)}
		if best < 0 || lessRank(rank, bestRank) {
			best, bestRank = k.Index, rank
		}
	}
	return best, best >= 0
}

func lessRank(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// FuzzMatch: Match never panics, agrees with refMatch, and a matched route's
// prefix matches the cleaned path so StripPrefix can remove it.
func FuzzMatch(f *testing.F) {
	keys := slices.Clone(routerKeys)
	for i, p := range []string{"/m/a", "/m/a/", "/m/a/b", "/m/b", "/m/c/d/", "/m/e", "/m/f", "/m/g", "/m/h/i"} {
		keys = append(keys, Key{Host: "many.test", Path: p, Index: len(routerKeys) + i})
	}
	r := mustRouter(f, keys)
	for _, s := range [][2]string{
		{"chat.example.com", "/ws/admin"}, {"A.b.EXAMPLE.com.:443", "/live"}, {"[::1]:80", "/v6/x"},
		{"::1", "/v6"}, {"example.com", "/ws"}, {"many.test", "/m/a/b/c"}, {"many.test", "/m/c/d"},
		{"", ""}, {"[", "/.."}, {"]:", "//"}, {".", "/./."}, {"a.:1:2", "/ws/../api/"}, {"[::1", "/api"},
		{"x..example.com", "/live/"}, {".example.com", "/tld"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, reqPath string) {
		got, ok := r.Match(host, reqPath)
		p := CleanPath(reqPath)
		if !isClean(p) || CleanPath(p) != p {
			t.Fatalf("CleanPath(%q) = %q is not clean", reqPath, p)
		}
		var buf [maxHostLen]byte
		h, fits := lowerHost(buf[:0], host)
		norm := string(h)
		if !fits {
			norm = ""
		}
		want, wantOK := refMatch(keys, norm, p)
		if got != want || ok != wantOK {
			t.Fatalf("Match(%q, %q) = %d, %v; reference says %d, %v", host, reqPath, got, ok, want, wantOK)
		}
		if !ok {
			return
		}
		prefix := keys[got].Path
		s := StripPrefix(p, prefix)
		if !strings.HasPrefix(s, "/") {
			t.Fatalf("StripPrefix(%q, %q) = %q", p, prefix, s)
		}
		// Stripping loses nothing but the prefix (and the slash after an
		// exact match: "/ws/" and "/ws" both become "/").
		rebuilt := strings.TrimSuffix(prefix, "/") + s
		if rebuilt != p && (s != "/" || rebuilt != p+"/") {
			t.Fatalf("StripPrefix(%q, %q) = %q does not rebuild the path", p, prefix, s)
		}
		if j := JoinPath("/up", s); strings.Contains(j, "//") {
			t.Fatalf("JoinPath(%q, %q) = %q has a double slash", "/up", s, j)
		}
	})
}

func ExampleRouter_Match() {
	r, err := New([]Key{
		{Host: "chat.example.com", Path: "/ws", Index: 0},
		{Host: "*.example.com", Path: "/ws", Index: 1},
		{Path: "/", Index: 2},
	})
	if err != nil {
		panic(err)
	}
	for _, req := range [][2]string{
		{"Chat.Example.com:443", "/ws/room"},
		{"eu.example.com", "/ws"},
		{"eu.example.com", "/wsx"},
		{"example.com", "/ws/../ws/room"},
	} {
		i, ok := r.Match(req[0], req[1])
		fmt.Println(req[0], req[1], "->", i, ok)
	}
	p := CleanPath("/ws/../ws/room")
	fmt.Println(JoinPath("/socket", StripPrefix(p, "/ws")))
	// Output:
	// Chat.Example.com:443 /ws/room -> 0 true
	// eu.example.com /ws -> 1 true
	// eu.example.com /wsx -> 2 true
	// example.com /ws/../ws/room -> 2 true
	// /socket/room
}

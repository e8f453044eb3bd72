package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
)

// hopByHop are the headers that describe one connection, not the request
// (RFC 9110 §7.6.1), plus the WebSocket handshake's own headers, which the
// gateway's upstream handshake sets itself (SPEC: "hop-by-hop headers and
// the client's own Sec-WebSocket-Key/Accept/Extensions are not" forwarded).
var hopByHop = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
	"Host":                true,
	"Content-Length":      true,
}

// forwardingHeaders are believed only from trusted proxies.
var forwardingHeaders = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Real-Ip"}

// peerAddr is the TCP peer of r.
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

func trusted(a netip.Addr, proxies []netip.Prefix) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the client's address: the TCP peer (with the PROXY protocol,
// the address its header gave), or, when the peer is a trusted proxy, the
// rightmost X-Forwarded-For address that is not itself a trusted proxy
// (SPEC "Config"); without X-Forwarded-For, the same from Forwarded's for=
// (RFC 7239).
func clientAddr(r *http.Request, proxies []netip.Prefix) netip.Addr {
	peer := peerAddr(r)
	if !trusted(peer, proxies) {
		return peer
	}
	chain := forwardedChain(r)
	addr := peer
	for i := len(chain) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(chain[i])
		if err != nil {
			return addr
		}
		addr = a.Unmap()
		if !trusted(addr, proxies) {
			return addr
		}
	}
	return addr
}

// forwardedChain is the list of addresses a trusted proxy says the request
// passed through, leftmost first: X-Forwarded-For, else Forwarded's for=
// values (brackets and ports removed; "unknown" and obfuscated identifiers
// are kept as they are, and stop the search for the client).
func forwardedChain(r *http.Request) []string {
	var chain []string
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, v := range xff {
			for _, p := range strings.Split(v, ",") {
				chain = append(chain, strings.TrimSpace(p))
			}
		}
		return chain
	}
	for _, v := range r.Header.Values("Forwarded") {
		for _, elem := range strings.Split(v, ",") {
			node := ""
			for _, pair := range strings.Split(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					node = strings.Trim(val, `"`)
				}
			}
			chain = append(chain, forwardedHost(node))
		}
	}
	return chain
}

// forwardedHost strips the port from a Forwarded node ("[2001:db8::1]:80",
// "192.0.2.1:80") and the brackets from an IPv6 address.
func forwardedHost(node string) string {
	if strings.HasPrefix(node, "[") {
		if i := strings.IndexByte(node, ']'); i > 0 {
			return node[1:i]
		}
		return node
	}
	if h, _, ok := strings.Cut(node, ":"); ok {
		return h
	}
	return node
}

// upstreamHeader builds the headers sent toward the upstream: the client's
// end-to-end headers, the forwarding headers, then the route's set_headers.
func upstreamHeader(r *http.Request, route *Route, proxies []netip.Prefix) http.Header {
	h := make(http.Header, len(r.Header)+4)
	// Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
	var named map[string]bool
	for _, v := range r.Header.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				if named == nil {
					named = make(map[string]bool)
				}
				named[textproto.CanonicalMIMEHeaderKey(t)] = true
			}
		}
	}
	peer := peerAddr(r)
	peerTrusted := trusted(peer, proxies)
	for k, vs := range r.Header {
		if hopByHop[k] || named[k] || strings.HasPrefix(k, "Sec-Websocket-") {
			continue
		}
		if !peerTrusted && isForwarding(k) {
			continue
		}
		h[k] = append([]string(nil), vs...)
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	prior := h.Values("X-Forwarded-For")
	if len(prior) == 0 && peerTrusted && len(h.Values("Forwarded")) > 0 {
		// A trusted proxy that speaks only RFC 7239: carry its chain on in
		// X-Forwarded-For too, so that the upstream finds the client there.
		prior = []string{strings.Join(forwardedChain(r), ", ")}
	}
	if len(prior) > 0 {
		h.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+peer.String())
	} else {
		h.Set("X-Forwarded-For", peer.String())
	}
	if h.Get("X-Forwarded-Proto") == "" {
		h.Set("X-Forwarded-Proto", proto)
	}
	if h.Get("X-Forwarded-Host") == "" {
		h.Set("X-Forwarded-Host", r.Host)
	}
	elem := "for=" + forwardedNode(peer) + ";host=" + quoteForwarded(r.Host) + ";proto=" + proto
	if prior := h.Values("Forwarded"); len(prior) > 0 {
		h.Set("Forwarded", strings.Join(prior, ", ")+", "+elem)
	} else {
		h.Set("Forwarded", elem)
	}
	for k, v := range route.SetHeaders {
		h.Set(k, v)
	}
	return h
}

func isForwarding(k string) bool {
	for _, f := range forwardingHeaders {
		if k == f {
			return true
		}
	}
	return false
}

// forwardedNode formats an address for Forwarded's for= (RFC 7239 §6): IPv6
// in brackets, and then quoted because of the colons.
func forwardedNode(a netip.Addr) string {
	if a.Is6() {
		return `"[` + a.String() + `]"`
	}
	return a.String()
}

// quoteForwarded quotes a value unless it is a token (RFC 7239 §4).
func quoteForwarded(v string) string {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
		}
	}
	return v
}

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

// clientAddr is the client's address: the TCP peer, or, when the peer is a
// trusted proxy, the rightmost X-Forwarded-For address that is not itself a
// trusted proxy (SPEC "Config").
func clientAddr(r *http.Request, proxies []netip.Prefix) netip.Addr {
	peer := peerAddr(r)
	if !trusted(peer, proxies) {
		return peer
	}
	xff := r.Header.Values("X-Forwarded-For")
	addr := peer
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return addr
			}
			addr = a.Unmap()
			if !trusted(addr, proxies) {
				return addr
			}
		}
	}
	return addr
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
	if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
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

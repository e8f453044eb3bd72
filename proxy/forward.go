package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"wsgate/internal/config"
	"wsgate/internal/listen"
)

// hopByHop are the headers that describe one connection, not the request
// (RFC 9110 §7.6.1), plus the WebSocket handshake's own headers, which the
// gateway's upstream handshake sets itself (docs/handshake.md "Header forwarding": "hop-by-hop headers and
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

// clientAddr is the client's address: the TCP peer (with the PROXY protocol,
// the address its header gave), or, when the peer is a trusted proxy, the
// rightmost X-Forwarded-For address that is not itself a trusted proxy
// (docs/operations.md "Config files and validation"); without X-Forwarded-For, the same from Forwarded's for=
// (RFC 7239).
func clientAddr(r *http.Request, proxies []netip.Prefix) netip.Addr {
	peer := peerAddr(r)
	if !listen.Trusted(peer, proxies) {
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
		if !listen.Trusted(addr, proxies) {
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
//
// It runs once per handshake, so it allocates little: the client's value
// slices are shared, not copied (capped, so that an append cannot write
// into r.Header), and the values it computes are cut from one string.
func upstreamHeader(r *http.Request, route *config.Route, proxies []netip.Prefix) http.Header {
	// Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
	var namedBuf [4]string
	named := namedBuf[:0]
	for _, v := range r.Header["Connection"] {
		for rest := v; rest != ""; {
			var t string
			t, rest, _ = strings.Cut(rest, ",")
			if t = strings.TrimSpace(t); t != "" {
				named = append(named, textproto.CanonicalMIMEHeaderKey(t))
			}
		}
	}
	peer := peerAddr(r)
	peerTrusted := listen.Trusted(peer, proxies)
	// The names kept, first, so that the map is made at its final size:
	// the handshake's own fields are most of a typical request's.
	var keptBuf [32]string
	kept := keptBuf[:0]
	for k := range r.Header {
		if hopByHop[k] || slices.Contains(named, k) || strings.HasPrefix(k, "Sec-Websocket-") {
			continue
		}
		if !peerTrusted && isForwarding(k) {
			continue
		}
		kept = append(kept, k)
	}
	h := make(http.Header, len(kept)+4)
	for _, k := range kept {
		if vs := r.Header[k]; len(vs) > 0 {
			h[k] = vs[:len(vs):len(vs)]
		} else {
			h[k] = nil
		}
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}

	// X-Forwarded-For and Forwarded, built into one buffer.
	var buf [256]byte
	b := buf[:0]
	if prior := h["X-Forwarded-For"]; len(prior) > 0 {
		b = appendJoined(b, prior)
		b = append(b, ", "...)
	} else if peerTrusted && len(h["Forwarded"]) > 0 {
		// A trusted proxy that speaks only RFC 7239: carry its chain on in
		// X-Forwarded-For too, so that the upstream finds the client there.
		b = appendJoined(b, forwardedChain(r))
		b = append(b, ", "...)
	}
	b = appendAddr(b, peer)
	xffEnd := len(b)
	if prior := h["Forwarded"]; len(prior) > 0 {
		b = appendJoined(b, prior)
		b = append(b, ", "...)
	}
	b = append(b, "for="...)
	b = appendForwardedNode(b, peer)
	b = append(b, ";host="...)
	b = appendForwardedValue(b, r.Host)
	b = append(b, ";proto="...)
	b = append(b, proto...)
	all := string(b)

	vals := make([]string, 4)
	vals[0] = all[:xffEnd]
	h["X-Forwarded-For"] = vals[0:1:1]
	if h.Get("X-Forwarded-Proto") == "" {
		vals[1] = proto
		h["X-Forwarded-Proto"] = vals[1:2:2]
	}
	if h.Get("X-Forwarded-Host") == "" {
		vals[2] = r.Host
		h["X-Forwarded-Host"] = vals[2:3:3]
	}
	vals[3] = all[xffEnd:]
	h["Forwarded"] = vals[3:4:4]
	for k, v := range route.SetHeaders {
		h.Set(k, v)
	}
	return h
}

// appendJoined appends values joined with ", " (strings.Join's result).
func appendJoined(b []byte, values []string) []byte {
	for i, v := range values {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, v...)
	}
	return b
}

// appendAddr appends a.String().
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, a.String()...) // AppendTo writes nothing for the zero Addr
	}
	return a.AppendTo(b)
}

// appendForwardedNode appends an address as Forwarded's for= has it (RFC
// 7239 §6): IPv6 in brackets, and then quoted because of the colons.
func appendForwardedNode(b []byte, a netip.Addr) []byte {
	if a.Is6() {
		b = append(b, `"[`...)
		b = appendAddr(b, a)
		return append(b, `]"`...)
	}
	return appendAddr(b, a)
}

// appendForwardedValue appends v as a Forwarded value: as it is if it is a
// token, else quoted (RFC 7239 §4), with backslash and quote escaped.
func appendForwardedValue(b []byte, v string) []byte {
	token := true
	for i := 0; i < len(v) && token; i++ {
		c := v[i]
		token = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
	}
	if token {
		return append(b, v...)
	}
	b = append(b, '"')
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\\' || c == '"' {
			b = append(b, '\\')
		}
		b = append(b, v[i])
	}
	return append(b, '"')
}

func isForwarding(k string) bool {
	for _, f := range forwardingHeaders {
		if k == f {
			return true
		}
	}
	return false
}

package handshake

import (
	"net/http"
	"slices"
	"strings"
)

// isTchar reports whether c may appear in an HTTP token (RFC 9110 §5.6.2):
//
//	tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
//	        "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
//
// RFC 6455 uses the same production (from RFC 2616) for subprotocol names
// (§4.1 item 10, §4.3) and header names.
var isTchar = [256]bool{
	'!': true, '#': true, '$': true, '%': true, '&': true, '\'': true, '*': true,
	'+': true, '-': true, '.': true, '^': true, '_': true, '`': true, '|': true, '~': true,
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true,
	'A': true, 'B': true, 'C': true, 'D': true, 'E': true, 'F': true, 'G': true, 'H': true, 'I': true,
	'J': true, 'K': true, 'L': true, 'M': true, 'N': true, 'O': true, 'P': true, 'Q': true, 'R': true,
	'S': true, 'T': true, 'U': true, 'V': true, 'W': true, 'X': true, 'Y': true, 'Z': true,
	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true, 'i': true,
	'j': true, 'k': true, 'l': true, 'm': true, 'n': true, 'o': true, 'p': true, 'q': true, 'r': true,
	's': true, 't': true, 'u': true, 'v': true, 'w': true, 'x': true, 'y': true, 'z': true,
}

// validToken reports whether s is a non-empty RFC 9110 token.
func validToken[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar[s[i]] {
			return false
		}
	}
	return true
}

// isCTL reports whether c is a control character that must never reach the
// wire inside a header value: everything below 0x20 except HTAB, and DEL.
// CR and LF are the ones that matter most (response splitting); NUL and the
// rest are rejected by strict peers and have no business in a header.
func isCTL(c byte) bool {
	return (c < 0x20 && c != '\t') || c == 0x7f
}

// trimOWS removes optional whitespace (SP / HTAB, RFC 9110 §5.6.3) around s.
func trimOWS[T string | []byte](s T) T {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// nextElem splits the first element off a comma-separated list
// (RFC 9110 §5.6.1) and trims it. Empty elements are returned as "" and
// callers skip them, as the list rule says recipients must.
func nextElem(s string) (elem, rest string) {
	if i := strings.IndexByte(s, ','); i >= 0 {
		return trimOWS(s[:i]), s[i+1:]
	}
	return trimOWS(s), ""
}

// hasToken reports whether any of the header's field lines holds token as a
// list element, compared ASCII case-insensitively. This is how RFC 6455
// §4.2.1 items 3-4 and §4.1 (client steps 2-3) read Upgrade and Connection:
// browsers send e.g. "Connection: keep-alive, Upgrade".
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for rest := v; rest != ""; {
			var e string
			e, rest = nextElem(rest)
			if strings.EqualFold(e, token) {
				return true
			}
		}
	}
	return false
}

// splitExtensions splits Sec-WebSocket-Extensions field lines into raw
// extension offers (RFC 6455 §9.1: extension = token *(";" param)), keeping
// each offer's parameters. Commas inside quoted strings do not split.
func splitExtensions(values []string) []string {
	var out []string
	for _, v := range values {
		start, quoted := 0, false
		for i := 0; i <= len(v); i++ {
			if i < len(v) {
				switch c := v[i]; {
				case quoted && c == '\\':
					i++ // quoted-pair: skip the escaped byte
					continue
				case c == '"':
					quoted = !quoted
					continue
				case c != ',' || quoted:
					continue
				}
			}
			if e := trimOWS(v[start:min(i, len(v))]); e != "" {
				out = append(out, e)
			}
			start = i + 1
		}
	}
	return out
}

// appendSanitized appends v without control characters (see isCTL) and
// without surrounding whitespace, so that a value taken from a peer (an
// upstream's Set-Cookie, a client's subprotocol) cannot split the message
// we write or inject header lines into it.
func appendSanitized(dst []byte, v string) []byte {
	v = trimOWS(v)
	for i := 0; i < len(v); i++ {
		if c := v[i]; !isCTL(c) {
			dst = append(dst, c)
		}
	}
	// Stripping may have exposed whitespace at the end ("a \r\n").
	for len(dst) > 0 && (dst[len(dst)-1] == ' ' || dst[len(dst)-1] == '\t') {
		dst = dst[:len(dst)-1]
	}
	return dst
}

// appendHeaderLine appends "name: value\r\n" with value sanitized.
func appendHeaderLine(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = appendSanitized(dst, value)
	return append(dst, "\r\n"...)
}

// appendHeader appends the field lines of h in a stable (sorted) order,
// skipping names that are not valid tokens and names for which drop
// reports true. Values are sanitized.
func appendHeader(dst []byte, h http.Header, drop func(name string) bool) []byte {
	if len(h) == 0 {
		return dst
	}
	var buf [32]string // on the stack for any usual header
	names := buf[:0]
	for name := range h {
		if validToken(name) && !drop(name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		for _, v := range h[name] {
			dst = appendHeaderLine(dst, name, v)
		}
	}
	return dst
}

// hasPrefixFold is strings.HasPrefix, ASCII case-insensitive.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// isHopByHop reports whether name is a hop-by-hop header (RFC 9110 §7.6.1,
// as httputil.ReverseProxy lists them) or one that describes message framing.
// Such headers describe one connection and must never be relayed across the
// gateway: forwarding Transfer-Encoding or Content-Length on a GET would make
// the upstream read our frames as a request body.
func isHopByHop(name string) bool {
	switch {
	case strings.EqualFold(name, "Connection"),
		strings.EqualFold(name, "Upgrade"),
		strings.EqualFold(name, "Keep-Alive"),
		strings.EqualFold(name, "TE"),
		strings.EqualFold(name, "Trailer"),
		strings.EqualFold(name, "Transfer-Encoding"),
		strings.EqualFold(name, "Content-Length"),
		hasPrefixFold(name, "Proxy-"): // Proxy-Authorization, Proxy-Authenticate, Proxy-Connection
		return true
	}
	return false
}

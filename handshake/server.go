package handshake

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// guid is the fixed string of RFC 6455 §1.3 and §4.2.2 that a server appends
// to the client's key to prove it understood the WebSocket handshake.
const guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxProtocols bounds the subprotocol offers Check accepts. Browsers send a
// handful; the bound keeps the uniqueness check cheap on hostile input.
const maxProtocols = 64

// Request is what the gateway needs from a valid upgrade request.
type Request struct {
	// Key is Sec-WebSocket-Key as sent (net/http has already trimmed
	// surrounding whitespace, which RFC 6455 §1.3 says to ignore).
	Key string
	// Protocols are the Sec-WebSocket-Protocol offers in the client's order
	// of preference (RFC 6455 §4.1 item 10), across repeated field lines,
	// comma split and trimmed. Each is a valid token and they are unique.
	Protocols []string
	// Extensions are the raw Sec-WebSocket-Extensions offers, parameters
	// included. Only permessage-deflate is negotiated (OfferDeflate).
	Extensions []string
	// Origin is the Origin header (RFC 6455 §4.2.2 /origin/), "" if absent.
	// Checking it against the route is the proxy's job.
	Origin string
}

// Rejection is a refused handshake: the status, a short plain-text reason,
// and headers to send with it.
type Rejection struct {
	Status int
	Reason string
	Header http.Header
}

// Error makes a Rejection usable as an error (for logs and errors.As).
func (r *Rejection) Error() string {
	return fmt.Sprintf("handshake: rejected with %d %s: %s", r.Status, http.StatusText(r.Status), r.Reason)
}

func reject(status int, reason string, kv ...string) *Rejection {
	r := &Rejection{Status: status, Reason: reason}
	if len(kv) > 0 {
		r.Header = make(http.Header, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			r.Header[kv[i]] = append(r.Header[kv[i]], kv[i+1])
		}
	}
	return r
}

// reject426 answers "you must speak WebSocket 13". RFC 9110 §15.5.22 makes
// Upgrade mandatory on a 426, and §7.8 makes a sender of Upgrade also send
// "Connection: Upgrade" so intermediaries do not forward it.
func reject426(reason string, kv ...string) *Rejection {
	return reject(http.StatusUpgradeRequired, reason,
		append([]string{"Upgrade", "websocket", "Connection", "Upgrade"}, kv...)...)
}

// Check makes the protocol checks of RFC 6455 §4.2.1 in the order of the
// docs/handshake.md's table, as a pure function: it reads r's method, protocol
// version and headers, and nothing else (no body, no I/O).
//
// Answers:
//
//   - method is not GET: 405 with "Allow: GET" (§4.2.1 item 1).
//   - HTTP version below 1.1: 400 (§4.2.1 item 1).
//   - no Upgrade header at all: 426 with "Upgrade: websocket" — a plain
//     HTTP request to a WebSocket endpoint, told which protocol it needs
//     (RFC 9110 §15.5.22).
//   - an Upgrade header without a "websocket" token: 400 — the client asked
//     for an upgrade, just not a valid WebSocket one (§4.2.1 item 3).
//   - Connection without an "upgrade" token: 400, for the same reason
//     (§4.2.1 item 4).
//   - Sec-WebSocket-Version not exactly one field with value 13: 426 with
//     "Sec-WebSocket-Version: 13" (§4.2.2 /version/, §4.4).
//   - Sec-WebSocket-Key absent, repeated, or not base64 of exactly 16
//     bytes: 400 (§4.2.1 item 5).
//   - Sec-WebSocket-Protocol offers that are not tokens, or repeated: 400
//     (§4.1 item 10; §4.2.1 says any ABNF violation gets 400); likewise
//     more than 64 offers, which no real client sends.
//
// Token comparisons are ASCII case-insensitive and read comma-separated
// lists across repeated field lines. Host is not checked: net/http already
// refuses an HTTP/1.1 request without one.
func Check(r *http.Request) (Request, *Rejection) {
	// §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
	if r.Method != http.MethodGet {
		return Request{}, reject(http.StatusMethodNotAllowed, "websocket handshake must use GET", "Allow", http.MethodGet)
	}
	if !r.ProtoAtLeast(1, 1) {
		return Request{}, reject(http.StatusBadRequest, "websocket handshake requires HTTP/1.1 or later")
	}

	// §4.2.1 item 3: "An |Upgrade| header field containing the value
	// "websocket", treated as an ASCII case-insensitive value."
	upgrade := r.Header["Upgrade"]
	if len(upgrade) == 0 {
		return Request{}, reject426("this endpoint speaks WebSocket only: upgrade to websocket required")
	}
	if !hasToken(upgrade, "websocket") {
		return Request{}, reject(http.StatusBadRequest, "Upgrade header does not contain the websocket token")
	}
	// §4.2.1 item 4: "A |Connection| header field that includes the token
	// "Upgrade", treated as an ASCII case-insensitive value."
	if !hasToken(r.Header["Connection"], "upgrade") {
		return Request{}, reject(http.StatusBadRequest, "Connection header does not contain the upgrade token")
	}

	// §4.2.1 item 6 and §4.2.2 /version/: a version we do not understand
	// gets "an appropriate HTTP error code (such as 426 Upgrade Required)
	// and a |Sec-WebSocket-Version| header field indicating the version(s)
	// the server is capable of understanding."
	if v := r.Header["Sec-Websocket-Version"]; len(v) != 1 || v[0] != "13" {
		return Request{}, reject426("unsupported Sec-WebSocket-Version: only 13 is supported", "Sec-WebSocket-Version", "13")
	}

	// §4.2.1 item 5: "A |Sec-WebSocket-Key| header field with a
	// base64-encoded value that, when decoded, is 16 bytes in length."
	keys := r.Header["Sec-Websocket-Key"]
	switch {
	case len(keys) == 0:
		return Request{}, reject(http.StatusBadRequest, "missing Sec-WebSocket-Key")
	case len(keys) > 1:
		return Request{}, reject(http.StatusBadRequest, "repeated Sec-WebSocket-Key")
	case !validKey(keys[0]):
		return Request{}, reject(http.StatusBadRequest, "Sec-WebSocket-Key is not base64 of 16 bytes")
	}

	protocols, ok := parseProtocols(r.Header["Sec-Websocket-Protocol"])
	if !ok {
		return Request{}, reject(http.StatusBadRequest, "invalid Sec-WebSocket-Protocol: offers must be unique tokens")
	}

	var origin string
	if o := r.Header["Origin"]; len(o) > 0 {
		origin = o[0]
	}
	return Request{
		Key:        keys[0],
		Protocols:  protocols,
		Extensions: splitExtensions(r.Header["Sec-Websocket-Extensions"]),
		Origin:     origin,
	}, nil
}

// isBase64 marks the standard base64 alphabet (RFC 4648 §4), the only one
// RFC 6455 §4.3's base64-character allows.
var isBase64 = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" {
		t[c] = true
	}
	return t
}()

// validKey reports whether key is base64 of exactly 16 bytes: 22 alphabet
// characters and "==". The unused low bits of the last character are not
// required to be zero: RFC 6455 §4.1 item 7's own example key
// ("AQIDBAUGBwgJCgsMDQ4PEC==") has them set, and encoding/base64's
// non-strict decoder accepts it too. Checked by hand so Check allocates
// nothing for the key.
func validKey(key string) bool {
	if len(key) != 24 || key[22] != '=' || key[23] != '=' {
		return false
	}
	for i := 0; i < 22; i++ {
		if !isBase64[key[i]] {
			return false
		}
	}
	return true
}

// parseProtocols splits the Sec-WebSocket-Protocol offers. RFC 6455 §4.1
// item 10: "The elements that comprise this value MUST be non-empty strings
// with characters in the range U+0021 to U+007E not including separator
// characters ... and MUST all be unique strings." Empty list elements are
// ignored (RFC 9110 §5.6.1). The result is nil when nothing was offered.
func parseProtocols(values []string) ([]string, bool) {
	n := 0
	for _, v := range values {
		for rest := v; rest != ""; {
			var e string
			e, rest = nextElem(rest)
			if e == "" {
				continue
			}
			if !validToken(e) {
				return nil, false
			}
			n++
		}
	}
	if n == 0 {
		return nil, true
	}
	if n > maxProtocols {
		return nil, false
	}
	out := make([]string, 0, n)
	for _, v := range values {
		for rest := v; rest != ""; {
			var e string
			e, rest = nextElem(rest)
			if e == "" {
				continue
			}
			for _, seen := range out {
				if seen == e { // subprotocol names compare exactly
					return nil, false
				}
			}
			out = append(out, e)
		}
	}
	return out, true
}

// AcceptKey returns the Sec-WebSocket-Accept value for key:
// base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2 step 5.4; the example in §1.3).
// Leading and trailing whitespace of key is ignored as §1.3 and §4.1 say.
// It allocates only the returned string.
func AcceptKey(key string) string {
	var b [28]byte
	return string(appendAccept(b[:0], key))
}

// appendAccept appends AcceptKey(key) to dst. The key and GUID are hashed
// from a stack buffer: a key of the valid length (24) fits with room to spare.
func appendAccept[T string | []byte](dst []byte, key T) []byte {
	key = trimOWS(key)
	var buf [96]byte
	p := buf[:0]
	if len(key)+len(guid) > len(buf) {
		p = make([]byte, 0, len(key)+len(guid))
	}
	p = append(p, key...)
	p = append(p, guid...)
	sum := sha1.Sum(p)
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// dropOn101 reports whether an extra header must not go on our 101. The
// Upgrade, Connection and Sec-WebSocket-* fields are ours to write (a second
// Sec-WebSocket-Accept or an Extensions field from an upstream would break
// the client's checks in RFC 6455 §4.1), and a 101 carries no body, so no
// framing headers either.
func dropOn101(name string) bool {
	return isHopByHop(name) || hasPrefixFold(name, "Sec-WebSocket-")
}

// AppendResponse101 appends the server's opening handshake (RFC 6455
// §4.2.2 step 5) accepting key to dst:
//
//	HTTP/1.1 101 Switching Protocols
//	Upgrade: websocket
//	Connection: Upgrade
//	Sec-WebSocket-Accept: <AcceptKey(key)>
//	Sec-WebSocket-Protocol: <protocol>      (only if protocol != "")
//	<extra, sorted by name>
//
// Every value written has control characters stripped and extra header
// names that are not tokens are dropped, so nothing taken from a peer can
// split the response. Extra headers that would conflict with the handshake
// (Upgrade, Connection, Sec-WebSocket-*, hop-by-hop and framing headers)
// are dropped too. No Sec-WebSocket-Extensions is written (see
// UpgradeDeflate for the one extension the gateway negotiates).
func AppendResponse101(dst []byte, key, protocol string, extra http.Header) []byte {
	return appendResponse101(dst, key, protocol, nil, extra)
}

func appendResponse101(dst []byte, key, protocol string, ext *Deflate, extra http.Header) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = appendAccept(dst, key)
	dst = append(dst, "\r\n"...)
	if protocol != "" {
		dst = appendHeaderLine(dst, "Sec-WebSocket-Protocol", protocol)
	}
	if ext != nil {
		// Built from parsed parameters, never copied from a peer.
		dst = append(dst, "Sec-WebSocket-Extensions: "...)
		dst = ext.append(dst)
		dst = append(dst, "\r\n"...)
	}
	dst = appendHeader(dst, extra, dropOn101)
	return append(dst, "\r\n"...)
}

// WriteRejection answers a refused handshake: rej.Status, rej.Header,
// "Content-Type: text/plain; charset=utf-8" and rej.Reason plus a newline
// as the body (docs/handshake.md "Rejections": every rejection names its reason).
func WriteRejection(w http.ResponseWriter, rej *Rejection) {
	h := w.Header()
	for name, values := range rej.Header {
		if !validToken(name) {
			continue
		}
		for _, v := range values {
			h.Add(name, string(appendSanitized(nil, v)))
		}
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(rej.Status)
	_, _ = w.Write(append(appendSanitized(nil, rej.Reason), '\n'))
}

// Upgrade accepts the handshake that Check validated as req: it hijacks the
// connection behind w, clears any deadlines the http.Server left on it,
// writes the 101 built by AppendResponse101, and hands the connection over.
//
// protocol is the subprotocol to confirm ("" for none); RFC 6455 §4.2.2
// /subprotocol/ requires it to be one of req.Protocols, and Upgrade refuses
// anything else. extra holds further headers for the 101, such as the
// upstream's Set-Cookie.
//
// The returned *bufio.Reader must be used for reading: it holds any bytes
// the client sent right after its request (a client may pipeline its first
// frames behind the handshake), which would be lost by reading conn
// directly. Once r.Buffered() is 0 it is safe to drop r and read conn.
//
// On every error the connection is closed. If nothing was hijacked yet (w
// cannot be hijacked, e.g. HTTP/2; protocol was not offered; req did not
// come from Check), a 500 is answered through w instead.
func Upgrade(w http.ResponseWriter, req Request, protocol string, extra http.Header) (net.Conn, *bufio.Reader, error) {
	return UpgradeDeflate(w, req, protocol, nil, extra)
}

// UpgradeDeflate is Upgrade confirming permessage-deflate with the
// response ext (nil: no extension, as Upgrade). ext is the upstream's
// accepted response as DeflateOffer.ClientResponse made it.
func UpgradeDeflate(w http.ResponseWriter, req Request, protocol string, ext *Deflate, extra http.Header) (net.Conn, *bufio.Reader, error) {
	// Both are caller bugs; the client must not get a 101 it would fail.
	if !validKey(req.Key) {
		WriteRejection(w, reject(http.StatusInternalServerError, "internal error"))
		return nil, nil, errors.New("handshake: Upgrade needs a Request from Check (invalid key)")
	}
	if protocol != "" && !contains(req.Protocols, protocol) {
		WriteRejection(w, reject(http.StatusInternalServerError, "internal error"))
		return nil, nil, fmt.Errorf("handshake: subprotocol %q was not offered by the client", protocol)
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			WriteRejection(w, reject(http.StatusInternalServerError, "internal error"))
		}
		return nil, nil, fmt.Errorf("handshake: hijack: %w", err)
	}
	// net/http clears its deadlines on hijack today, but wrapped writers
	// and other servers may not; a ReadTimeout left on a WebSocket
	// connection would kill it mid-session (gorilla/websocket does the same).
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("handshake: clear deadline: %w", err)
	}
	bp := respPool.Get().(*[]byte)
	defer putResp(bp)
	*bp = appendResponse101((*bp)[:0], req.Key, protocol, ext, extra)
	if _, err := conn.Write(*bp); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("handshake: write 101: %w", err)
	}
	return conn, brw.Reader, nil
}

// respPool holds the buffers 101s are built in: one escapes to the heap with
// every conn.Write, so a handshake would otherwise allocate one.
var respPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 512)
	return &b
}}

func putResp(bp *[]byte) {
	if cap(*bp) <= 4<<10 { // an upstream's many cookies are not kept
		respPool.Put(bp)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

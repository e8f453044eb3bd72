package handshake

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
)

// Defaults for the bounds of ReadResponse and Dialer.
const (
	DefaultMaxResponseBytes = 16 << 10
	DefaultMaxBodyBytes     = 1 << 10
)

// Response is an upstream's answer to our opening handshake, as parsed by
// ReadResponse.
type Response struct {
	Proto      string // "HTTP/1.1" or "HTTP/1.0"
	StatusCode int
	Reason     string // reason phrase, may be empty
	Header     http.Header
	// Body holds at most maxBody bytes of a non-101 answer's body; it is
	// nil for a 101, whose following bytes are WebSocket frames.
	Body []byte
	// HeadSize is the number of bytes consumed for the status line and
	// headers, including any skipped 1xx interim responses. It never
	// exceeds maxHeader.
	HeadSize int
}

// ReadResponse reads one HTTP/1.x response head from br, bounded by
// maxHeader bytes in total, and, unless it is a 101, up to maxBody bytes of
// its body. A bound ≤ 0 selects the default (DefaultMaxResponseBytes,
// DefaultMaxBodyBytes).
//
// For a 101 it reads exactly the head and nothing more: bytes the upstream
// sent right behind it (its first frames, RFC 6455 §4.2.2: "the server may
// begin sending") stay in br. That is why the head is parsed here by hand
// instead of with http.ReadResponse, which would need a limit wrapper
// under br for the whole life of the connection.
//
// Interim 1xx responses other than 101 (100 Continue, 103 Early Hints) are
// skipped, as RFC 9110 §15.2 asks of a client. Line endings may be CRLF or
// bare LF (RFC 9112 §2.2); obsolete line folding is replaced by a space
// (RFC 9112 §5.2). Anything else malformed — a bad status line, a header
// name that is not a token, whitespace before the colon, control characters
// in a value — is ErrBadResponse; a head over the bound is
// ErrResponseTooLarge. Errors from br are returned as they are, with a
// premature io.EOF turned into io.ErrUnexpectedEOF.
//
// Body errors are not reported: a partial body is still worth passing on
// with the status.
func ReadResponse(br *bufio.Reader, maxHeader, maxBody int) (*Response, error) {
	if maxHeader <= 0 {
		maxHeader = DefaultMaxResponseBytes
	}
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	hr := headReader{br: br, max: maxHeader}
	for {
		resp, err := hr.readHead()
		if err != nil {
			return nil, err
		}
		resp.HeadSize = hr.n
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return resp, nil
		case resp.StatusCode < 200:
			continue // interim response; the real one follows
		}
		resp.Body = readBody(br, resp, maxBody)
		return resp, nil
	}
}

// headReader reads lines of a response head, counting every byte consumed
// against max.
type headReader struct {
	br   *bufio.Reader
	n    int
	max  int
	long []byte // assembles a line longer than br's buffer
}

// line returns the next line without its line ending. The slice is valid
// until the next call.
func (h *headReader) line() ([]byte, error) {
	h.long = h.long[:0]
	for {
		chunk, err := h.br.ReadSlice('\n')
		h.n += len(chunk)
		if h.n > h.max {
			return nil, ErrResponseTooLarge
		}
		switch err {
		case nil:
			if len(h.long) > 0 {
				h.long = append(h.long, chunk...)
				chunk = h.long
			}
			chunk = chunk[:len(chunk)-1]
			if n := len(chunk); n > 0 && chunk[n-1] == '\r' {
				chunk = chunk[:n-1]
			}
			return chunk, nil
		case bufio.ErrBufferFull:
			h.long = append(h.long, chunk...)
		case io.EOF:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// readHead reads a status line and header fields up to the empty line.
//
// A response head is read once per handshake, so it is built with few
// allocations: the values are collected in one buffer and cut from one
// string at the end, the value slices share one array, and common field
// names are not allocated at all (see headerKey).
func (h *headReader) readHead() (*Response, error) {
	line, err := h.line()
	if err != nil {
		return nil, err
	}
	resp, err := parseStatusLine(line)
	if err != nil {
		return nil, err
	}
	hs := headScratchPool.Get().(*headScratch)
	defer headScratchPool.Put(hs)
	fields, vals := hs.fields[:0], hs.vals[:0]
	for {
		line, err := h.line()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// RFC 9112 §5.2: a user agent "MUST replace each received
			// obs-fold with one or more SP octets". The folded value is
			// the last one in vals: extend it.
			v := trimOWS(line)
			if len(fields) == 0 || !validValue(v) {
				return nil, ErrBadResponse
			}
			if len(v) > 0 {
				vals = append(vals, ' ')
				vals = append(vals, v...)
				fields[len(fields)-1].end = len(vals)
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		// A name must be a token; RFC 9112 §5.1 forbids whitespace between
		// the name and the colon, which this also rejects.
		if colon <= 0 || !validToken(line[:colon]) {
			return nil, ErrBadResponse
		}
		v := trimOWS(line[colon+1:])
		if !validValue(v) {
			return nil, ErrBadResponse
		}
		fields = append(fields, headField{key: headerKey(line[:colon]), start: len(vals)})
		vals = append(vals, v...)
		fields[len(fields)-1].end = len(vals)
	}
	if cap(vals) <= 4<<10 && cap(fields) <= 64 { // kept for the next head unless unusually large
		hs.fields, hs.vals = fields, vals
	}
	resp.Header = make(http.Header, len(fields))
	all := string(vals)
	values := make([]string, len(fields))
	for i, f := range fields {
		values[i] = all[f.start:f.end]
		if prev, ok := resp.Header[f.key]; ok {
			resp.Header[f.key] = append(prev, values[i])
		} else {
			resp.Header[f.key] = values[i : i+1 : i+1]
		}
	}
	return resp, nil
}

// headScratch collects a head's fields and their values (readHead).
type headScratch struct {
	fields []headField
	vals   []byte
}

type headField struct {
	key        string
	start, end int // of the value in headScratch.vals
}

var headScratchPool = sync.Pool{New: func() any {
	return &headScratch{fields: make([]headField, 0, 16), vals: make([]byte, 0, 512)}
}}

// commonKeys are the field names an upstream's answer usually carries, in
// canonical form: headerKey returns these strings instead of allocating.
var commonKeys = [...]string{
	"Upgrade", "Connection", "Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions",
	"Set-Cookie", "Date", "Server", "Content-Length", "Content-Type", "Transfer-Encoding",
	"Cache-Control", "Www-Authenticate", "Retry-After", "Location",
}

// headerKey is textproto.CanonicalMIMEHeaderKey(string(name)) for a valid
// token, without an allocation for the common names.
func headerKey(name []byte) string {
	for _, k := range commonKeys {
		if len(k) == len(name) && equalFoldASCII(name, k) {
			return k
		}
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

// equalFoldASCII reports whether b and s are equal under ASCII case folding.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// validValue rejects control characters in a field value (RFC 9110 §5.5:
// field-vchar, SP and HTAB only; a bare CR "MUST be considered invalid").
// We copy some of these values onto our own responses, so strictness here
// is cheap insurance on top of the sanitizing writer.
func validValue(v []byte) bool {
	for _, c := range v {
		if isCTL(c) {
			return false
		}
	}
	return true
}

// parseStatusLine parses "HTTP/1.x SP 3DIGIT [SP reason]" (RFC 9112 §4).
// A missing reason, with or without the space, is accepted as net/http does.
func parseStatusLine(line []byte) (*Response, error) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) ||
		(line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return nil, ErrBadResponse
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return nil, ErrBadResponse
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || code > 599 {
		return nil, ErrBadResponse
	}
	var reason []byte
	if len(line) > 12 {
		if line[12] != ' ' {
			return nil, ErrBadResponse
		}
		reason = line[13:]
		if !validValue(reason) {
			return nil, ErrBadResponse
		}
	}
	proto := "HTTP/1.1"
	if line[7] == '0' {
		proto = "HTTP/1.0"
	}
	r := &Response{Proto: proto, StatusCode: code, Reason: "Switching Protocols"}
	if code != http.StatusSwitchingProtocols || string(reason) != r.Reason {
		r.Reason = string(reason)
	}
	return r, nil
}

// readBody keeps up to max bytes of a final non-101 response's body,
// following RFC 9112 §6.3 to find where it ends: none for 204 and 304;
// chunked when Transfer-Encoding ends in chunked; otherwise until the
// connection closes if Transfer-Encoding is present; Content-Length when
// valid; otherwise until the connection closes.
func readBody(br *bufio.Reader, resp *Response, max int) []byte {
	if resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		return nil
	}
	var src io.Reader = br
	if te := resp.Header["Transfer-Encoding"]; len(te) > 0 {
		if lastElem(te) == "chunked" {
			src = httputil.NewChunkedReader(br)
		}
	} else if cl, ok := resp.Header["Content-Length"]; ok {
		n, ok := contentLength(cl)
		if !ok || n == 0 {
			return nil
		}
		if n < int64(max) {
			max = int(n)
		}
	}
	buf := make([]byte, max)
	n, _ := io.ReadFull(src, buf)
	if n == 0 {
		return nil
	}
	return buf[:n:n]
}

// lastElem returns the last non-empty element of a list header, lowercased.
func lastElem(values []string) string {
	var last string
	for _, v := range values {
		for rest := v; rest != ""; {
			var e string
			e, rest = nextElem(rest)
			if e != "" {
				last = e
			}
		}
	}
	return strings.ToLower(last)
}

// contentLength parses Content-Length; repeated fields must agree
// (RFC 9112 §6.3 item 5).
func contentLength(values []string) (int64, bool) {
	var n int64 = -1
	for _, v := range values {
		for rest := v; rest != ""; {
			var e string
			e, rest = nextElem(rest)
			if e == "" {
				continue
			}
			for i := 0; i < len(e); i++ {
				if e[i] < '0' || e[i] > '9' {
					return 0, false
				}
			}
			m, err := strconv.ParseInt(e, 10, 64)
			if err != nil || (n >= 0 && m != n) {
				return 0, false
			}
			n = m
		}
	}
	return n, n >= 0
}

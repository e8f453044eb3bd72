package handshake

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzCheck builds a request from fuzzed method, version and header values
// (several fields may hold comma lists, and "\n" in a value makes repeated
// field lines). Check must never panic; an acceptance must mean every rule
// of RFC 6455 §4.2.1 holds, in particular that the key decodes to exactly
// 16 bytes; a rejection must be one of the statuses docs/handshake.md "Rejections" gives
// this package. An accepted request's 101 must parse back with the right
// accept and no smuggled header.
func FuzzCheck(f *testing.F) {
	// Seeds: the RFC 6455 §1.3 handshake, §4.1 item 7's key, and the
	// nastiest near-misses.
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", rfcKey, "chat, superchat", "", "http://example.com")
	f.Add("GET", 1, 1, "WebSocket", "keep-alive, Upgrade", "13", "AQIDBAUGBwgJCgsMDQ4PEC==", "", "permessage-deflate; client_max_window_bits", "")
	f.Add("POST", 1, 1, "websocket", "Upgrade", "13", rfcKey, "", "", "")
	f.Add("GET", 1, 0, "websocket", "Upgrade", "13", rfcKey, "", "", "")
	f.Add("GET", 2, 0, "websocket", "Upgrade", "13", rfcKey, "", "", "")
	f.Add("GET", 1, 1, "", "Upgrade", "13", rfcKey, "", "", "")
	f.Add("GET", 1, 1, "h2c", "Upgrade", "13", rfcKey, "", "", "")
	f.Add("GET", 1, 1, "websocket", "close", "13", rfcKey, "", "", "")
	f.Add("GET", 1, 1, "websocket", "Upgrade", "8", rfcKey, "", "", "")
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13\n13", rfcKey, "", "", "")
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", rfcKey+"\n"+rfcKey, "", "", "")
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ=", "", "", "")
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ==\r\n", "", "", "")
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", "-_-_-_-_-_-_-_-_-_-_-_==", "", "", "")
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", rfcKey, "a,,b\nc", "", "")
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", rfcKey, "chat, chat", "", "")
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", rfcKey, "chat\r\nX-Evil: 1", "", "")
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", rfcKey, "", `x; a="1,\"2"`, "")
	f.Fuzz(func(t *testing.T, method string, major, minor int, upgrade, connection, version, key, protocols, extensions, origin string) {
		r := &http.Request{Method: method, ProtoMajor: major, ProtoMinor: minor, Header: http.Header{}}
		for name, v := range map[string]string{
			"Upgrade": upgrade, "Connection": connection, "Sec-Websocket-Version": version,
			"Sec-Websocket-Key": key, "Sec-Websocket-Protocol": protocols,
			"Sec-Websocket-Extensions": extensions, "Origin": origin,
		} {
			if v != "" {
				r.Header[name] = strings.Split(v, "\n")
			}
		}
		req, rej := Check(r)
		if rej != nil {
			switch rej.Status {
			case 400, 405, 426:
			default:
				t.Fatalf("status %d", rej.Status)
			}
			if rej.Reason == "" || rej.Error() == "" {
				t.Fatal("rejection without a reason")
			}
			return
		}
		raw, err := base64.StdEncoding.DecodeString(req.Key)
		if err != nil || len(raw) != 16 {
			t.Fatalf("accepted key %q decodes to %d bytes, %v", req.Key, len(raw), err)
		}
		if method != "GET" || !r.ProtoAtLeast(1, 1) || !hasToken(r.Header["Upgrade"], "websocket") ||
			!hasToken(r.Header["Connection"], "upgrade") || version != "13" {
			t.Fatalf("accepted a request breaking §4.2.1: %q %d.%d %q %q %q", method, major, minor, upgrade, connection, version)
		}
		seen := map[string]bool{}
		for _, p := range req.Protocols {
			if !validToken(p) || seen[p] {
				t.Fatalf("protocol offer %q invalid or repeated", p)
			}
			seen[p] = true
		}
		for _, e := range req.Extensions {
			if e == "" {
				t.Fatal("empty extension offer")
			}
		}
		protocol := ""
		if len(req.Protocols) > 0 {
			protocol = req.Protocols[len(req.Protocols)-1]
		}
		head := AppendResponse101(nil, req.Key, protocol, http.Header{"Set-Cookie": {origin}})
		resp, err := ReadResponse(bufio.NewReader(bytes.NewReader(head)), len(head), 0)
		if err != nil {
			t.Fatalf("our 101 does not parse: %v\n%q", err, head)
		}
		if resp.HeadSize != len(head) || resp.Header.Get("Sec-WebSocket-Accept") != AcceptKey(req.Key) ||
			len(resp.Header) > 5 || resp.Header.Get("Sec-WebSocket-Protocol") != protocol {
			t.Fatalf("101 round trip: %v", resp.Header)
		}
	})
}

// FuzzReadResponse feeds arbitrary bytes to the response parser through
// a small and a normal buffer. It must never panic, never report a head
// over the bound or a body over its bound, never keep a control character
// in a header, and for a 101 leave exactly the bytes after the head in the
// reader (frames that follow the 101 must not be lost, RFC 6455 §4.2.2).
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+rfcAccept+"\r\nSec-WebSocket-Protocol: chat\r\n\r\n\x81\x02hi"), 0, 0)
	f.Add([]byte("HTTP/1.1 101 x\nUpgrade: websocket\n\n\x88\x00"), 64, 0)
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 S\r\n\r\n"), 0, 0)
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\nWWW-Authenticate: Bearer\r\nSet-Cookie: a=1\r\nContent-Length: 5\r\n\r\nhello"), 0, 3)
	f.Add([]byte("HTTP/1.1 500 E\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 0, 0)
	f.Add([]byte("HTTP/1.1 500 E\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc"), 0, 0)
	f.Add([]byte("HTTP/1.1 502 B\r\nContent-Length: 99999999999999999999\r\n\r\nx"), 0, 0)
	f.Add([]byte("HTTP/1.1 101 S\r\nX: a\r\n b\r\n\tc\r\n\r\n"), 0, 0)
	f.Add([]byte("HTTP/1.1 101 S\r\nX : a\r\n\r\n"), 0, 0)
	f.Add([]byte("HTTP/1.1 101 S\r\nSet-Cookie: a\rb\r\n\r\n"), 0, 0)
	f.Add([]byte("HTTP/1.1 101 S\r\nX: "+strings.Repeat("a", 100)+"\r\n\r\n"), 50, 0)
	f.Add([]byte("HTTP/2 101\r\n\r\n"), 0, 0)
	f.Add([]byte(""), 0, 0)
	f.Fuzz(func(t *testing.T, data []byte, maxHeader, maxBody int) {
		// Keep the bounds small enough to be hit, and never above the
		// defaults (a huge maxBody would make the parser allocate it).
		maxHeader %= 2 * DefaultMaxResponseBytes
		maxBody %= 2 * DefaultMaxBodyBytes
		wantHeader, wantBody := maxHeader, maxBody
		if wantHeader <= 0 {
			wantHeader = DefaultMaxResponseBytes
		}
		if wantBody <= 0 {
			wantBody = DefaultMaxBodyBytes
		}
		var first *Response
		for _, size := range []int{16, 4096} {
			br := bufio.NewReaderSize(bytes.NewReader(data), size)
			resp, err := ReadResponse(br, maxHeader, maxBody)
			if err != nil {
				if resp != nil {
					t.Fatal("response with an error")
				}
				if first != nil {
					t.Fatalf("buffer size changes the outcome: %v", err)
				}
				continue
			}
			if resp.HeadSize > wantHeader || resp.HeadSize > len(data) || len(resp.Body) > wantBody {
				t.Fatalf("head %d (bound %d), body %d (bound %d)", resp.HeadSize, wantHeader, len(resp.Body), wantBody)
			}
			if resp.StatusCode < 100 || resp.StatusCode > 599 || (resp.StatusCode < 200 && resp.StatusCode != 101) {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for name, values := range resp.Header {
				if !validToken(name) {
					t.Fatalf("header name %q", name)
				}
				for _, v := range values {
					if !validValue([]byte(v)) {
						t.Fatalf("control character kept in %s: %q", name, v)
					}
				}
			}
			if resp.StatusCode == 101 {
				rest, _ := io.ReadAll(br)
				if resp.Body != nil || !bytes.Equal(rest, data[resp.HeadSize:]) {
					t.Fatalf("101 consumed %d bytes but left %d of %d", resp.HeadSize, len(rest), len(data))
				}
			}
			if first == nil {
				first = resp
			} else if first.StatusCode != resp.StatusCode || first.HeadSize != resp.HeadSize || !reflect.DeepEqual(first.Header, resp.Header) {
				t.Fatal("buffer size changes the head")
			} else if len(resp.Header["Transfer-Encoding"]) == 0 && !bytes.Equal(first.Body, resp.Body) {
				// Chunked bodies are exempt: httputil's chunked reader
				// refuses chunk-size lines longer than br's buffer, and
				// the body is best effort anyway.
				t.Fatal("buffer size changes the body")
			}
		}
	})
}

// FuzzAppendResponse101 writes a 101 with a fuzzed subprotocol and extra
// header (as an upstream's Set-Cookie would be copied), then parses it back:
// whatever the input, the output is one well-formed head whose handshake
// fields are ours, with no header a peer could inject.
func FuzzAppendResponse101(f *testing.F) {
	f.Add(rfcKey, "chat", "Set-Cookie", "a=1; Path=/")
	f.Add(rfcKey, "chat\r\nX-Evil: 1", "Set-Cookie", "a=1\r\n\r\nHTTP/1.1 200 OK")
	f.Add(rfcKey, "", "Sec-WebSocket-Accept", "forged")
	f.Add(rfcKey, "", "X-Bad Name", "v")
	f.Add(rfcKey, "\x00", "X", "\x7f\x01\t")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, key, protocol, name, value string) {
		head := AppendResponse101(nil, key, protocol, http.Header{name: {value}})
		resp, err := ReadResponse(bufio.NewReader(bytes.NewReader(head)), len(head)+1, 0)
		if err != nil {
			t.Fatalf("%v\n%q", err, head)
		}
		if resp.StatusCode != 101 || resp.HeadSize != len(head) {
			t.Fatalf("status %d, head %d of %d", resp.StatusCode, resp.HeadSize, len(head))
		}
		if len(resp.Header["Upgrade"]) != 1 || len(resp.Header["Connection"]) != 1 ||
			len(resp.Header["Sec-Websocket-Accept"]) != 1 || resp.Header.Get("Sec-WebSocket-Accept") != AcceptKey(key) ||
			len(resp.Header["Sec-Websocket-Protocol"]) > 1 || len(resp.Header["Sec-Websocket-Extensions"]) != 0 {
			t.Fatalf("handshake fields overridden: %v", resp.Header)
		}
		// At most the three fixed fields, the protocol, and the extra one.
		if n := len(resp.Header); n > 5 {
			t.Fatalf("%d header names: %v", n, resp.Header)
		}
	})
}

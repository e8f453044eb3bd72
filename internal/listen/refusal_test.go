package listen

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// httpRefusal recognises exactly the answers net/http writes by itself
// (net/http's conn.serve), not those written through a ResponseWriter.
func TestHTTPRefusal(t *testing.T) {
	for _, c := range []struct {
		name, wire string
		status     int
		reason     string // substring; "" when not recognised
	}{
		{"431", "HTTP/1.1 431 Request Header Fields Too Large" + netHTTPErrorHeaders + "431 Request Header Fields Too Large",
			431, "max_header_bytes"},
		{"400 with text", "HTTP/1.1 400 Bad Request: missing required Host header" + netHTTPErrorHeaders + "400 Bad Request: missing required Host header",
			400, "missing required Host header"},
		{"501", "HTTP/1.1 501 Not Implemented" + netHTTPErrorHeaders + "Unsupported transfer encoding", 501, "Unsupported transfer encoding"},
		{"505", "HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version" + netHTTPErrorHeaders + "505 HTTP Version Not Supported: unsupported protocol version",
			505, "unsupported protocol version"},
		{"invalid UTF-8 kept valid", "HTTP/1.1 400 Bad Request" + netHTTPErrorHeaders + "bad \xff", 400, "bad ?"},
		// A ResponseWriter sorts its headers and adds Date and Content-Length.
		{"the handler's 431", "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 45\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\nDate: Sun, 22 Nov 2026 06:00:00 GMT\r\nX-Content-Type-Options: nosniff\r\n\r\nrequest headers larger than max_header_bytes\n", 0, ""},
		// An upstream's refusal passed on, its body made to look like
		// net/http's headers.
		{"an upstream body", "HTTP/1.1 403 Forbidden\r\nContent-Length: 80\r\nContent-Type: text/plain\r\nDate: Sun, 22 Nov 2026 06:00:00 GMT\r\n\r\n" +
			"x" + netHTTPErrorHeaders + "INJECTED", 0, ""},
		{"a 101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 0, ""},
		{"a relayed frame", "\x82\x05hello", 0, ""},
		{"status out of range", "HTTP/1.1 200 OK" + netHTTPErrorHeaders, 0, ""},
		{"no status", "HTTP/1.1 " + netHTTPErrorHeaders, 0, ""},
	} {
		status, reason, ok := httpRefusal([]byte(c.wire))
		if ok != (c.status != 0) || status != c.status || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: got %d %q %v, want %d and a reason with %q", c.name, status, reason, ok, c.status, c.reason)
		}
	}
}

func FuzzHTTPRefusal(f *testing.F) {
	f.Add([]byte("HTTP/1.1 431 Request Header Fields Too Large" + netHTTPErrorHeaders + "431 Request Header Fields Too Large"))
	f.Add([]byte("HTTP/1.1 400 Bad Request" + netHTTPErrorHeaders + "400 Bad Request"))
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		status, reason, ok := httpRefusal(b)
		if !ok {
			if status != 0 || reason != "" {
				t.Fatalf("not recognised, but status %d reason %q", status, reason)
			}
			return
		}
		if status < 400 || status > 599 || !utf8.ValidString(reason) || reason == "" {
			t.Fatalf("status %d, reason %q", status, reason)
		}
	})
}

package handshake

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

func BenchmarkAcceptKey(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(rfcKey)))
	for b.Loop() {
		_ = AcceptKey(rfcKey)
	}
}

func BenchmarkCheck(b *testing.B) {
	for _, bc := range []struct {
		name string
		r    *http.Request
	}{
		{"valid_no_protocols", rfcRequest(del("Sec-WebSocket-Protocol"))},
		{"valid_RFC6455_1.3", rfcRequest(nil)},
		{"rejected_426_version", rfcRequest(set("Sec-WebSocket-Version", "8"))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Check(bc.r)
			}
		})
	}
}

func BenchmarkAppendResponse101(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 256)
	extra := http.Header{"Set-Cookie": {"sid=abc; Path=/; HttpOnly"}}
	for b.Loop() {
		buf = AppendResponse101(buf[:0], rfcKey, "chat", extra)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkReadResponse(b *testing.B) {
	head := AppendResponse101(nil, rfcKey, "chat", http.Header{"Set-Cookie": {"sid=abc"}})
	b.ReportAllocs()
	b.SetBytes(int64(len(head)))
	r := bytes.NewReader(head)
	br := bufio.NewReader(r)
	for b.Loop() {
		r.Reset(head)
		br.Reset(r)
		if _, err := ReadResponse(br, 0, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendRequest builds the upstream request of a typical gateway
// handshake (forwarded cookie, user agent and forwarding headers), as Dial
// does into its pooled buffer.
func BenchmarkAppendRequest(b *testing.B) {
	t := target{hostHeader: "10.0.0.5:9000", requestURI: "/chat?room=1"}
	header := http.Header{
		"Cookie": {"sid=abc"}, "User-Agent": {"Mozilla/5.0"}, "Origin": {"https://app.example"},
		"X-Forwarded-For": {"192.0.2.7"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"gw.example:8080"},
		"Forwarded": {`for=192.0.2.7;host="gw.example:8080";proto=http`},
	}
	key := []byte(rfcKey)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendRequest(buf[:0], t, key, []string{"chat"}, header)
	}
	b.SetBytes(int64(len(buf)))
}

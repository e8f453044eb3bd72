package handshake

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// rfcKey is the Sec-WebSocket-Key of RFC 6455 §1.3 and §4.2.2.
const rfcKey = "dGhlIHNhbXBsZSBub25jZQ=="

// rfcAccept is its accept value as printed in RFC 6455 §1.3 and §4.2.2
// (SHA-1 0xb37a4f2c…c4ea, base64).
const rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

// rfcRequest builds the client handshake of RFC 6455 §1.3, then applies edit.
func rfcRequest(edit func(r *http.Request)) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://server.example.com/chat", nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Key", rfcKey)
	r.Header.Set("Origin", "http://example.com")
	r.Header.Set("Sec-WebSocket-Protocol", "chat, superchat")
	r.Header.Set("Sec-WebSocket-Version", "13")
	if edit != nil {
		edit(r)
	}
	return r
}

func set(name string, values ...string) func(*http.Request) {
	return func(r *http.Request) {
		r.Header.Del(name)
		for _, v := range values {
			r.Header.Add(name, v)
		}
	}
}

func del(name string) func(*http.Request) { return func(r *http.Request) { r.Header.Del(name) } }

func proto(major, minor int) func(*http.Request) {
	return func(r *http.Request) {
		r.ProtoMajor, r.ProtoMinor = major, minor
		r.Proto = "HTTP/" + string(rune('0'+major)) + "." + string(rune('0'+minor))
	}
}

func chain(fs ...func(*http.Request)) func(*http.Request) {
	return func(r *http.Request) {
		for _, f := range fs {
			f(r)
		}
	}
}

// want426 is what both 426 answers carry: RFC 9110 §15.5.22 requires
// Upgrade on a 426, and §7.8 requires Connection: Upgrade with it.
var want426 = http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}

// TestCheck is the golden table of RFC 6455 §4.2.1 checks in the documented
// order: each row names the RFC rule it exercises.
func TestCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		edit   func(*http.Request)
		status int // 0: accepted
		reason string
		header http.Header // expected rejection headers (exact)
		want   *Request    // expected result when accepted (nil: don't compare)
	}{
		{name: "RFC6455_1.3_example_accepted", want: &Request{
			Key: rfcKey, Protocols: []string{"chat", "superchat"}, Origin: "http://example.com"}},

		// §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
		{name: "4.2.1_item1_POST_405", edit: func(r *http.Request) { r.Method = http.MethodPost },
			status: 405, reason: "GET", header: http.Header{"Allow": {"GET"}}},
		{name: "4.2.1_item1_HEAD_405", edit: func(r *http.Request) { r.Method = http.MethodHead },
			status: 405, reason: "GET", header: http.Header{"Allow": {"GET"}}},
		{name: "4.2.1_item1_lowercase_get_405", edit: func(r *http.Request) { r.Method = "get" },
			status: 405, reason: "GET", header: http.Header{"Allow": {"GET"}}},
		{name: "4.2.1_item1_method_checked_before_version",
			edit:   chain(func(r *http.Request) { r.Method = http.MethodPut }, proto(1, 0), del("Upgrade")),
			status: 405, reason: "GET", header: http.Header{"Allow": {"GET"}}},
		{name: "4.2.1_item1_HTTP1.0_400", edit: proto(1, 0), status: 400, reason: "HTTP/1.1"},
		{name: "4.2.1_item1_HTTP0.9_400", edit: proto(0, 9), status: 400, reason: "HTTP/1.1"},
		{name: "4.2.1_item1_HTTP1.2_accepted", edit: proto(1, 2)},

		// §4.2.1 item 3: Upgrade contains "websocket", case-insensitive.
		{name: "4.2.1_item3_Upgrade_absent_426", edit: del("Upgrade"),
			status: 426, reason: "upgrade to websocket", header: want426},
		{name: "4.2.1_item3_Upgrade_absent_and_no_Connection_426", edit: chain(del("Upgrade"), del("Connection")),
			status: 426, reason: "upgrade to websocket", header: want426},
		{name: "4.2.1_item3_Upgrade_h2c_400", edit: set("Upgrade", "h2c"), status: 400, reason: "Upgrade"},
		{name: "4.2.1_item3_Upgrade_empty_400", edit: set("Upgrade", ""), status: 400, reason: "Upgrade"},
		{name: "4.2.1_item3_Upgrade_websocketx_400", edit: set("Upgrade", "websocketx"), status: 400, reason: "Upgrade"},
		{name: "4.2.1_item3_Upgrade_websocket_slash_13_400", edit: set("Upgrade", "websocket/13"), status: 400, reason: "Upgrade"},
		{name: "4.2.1_item3_Upgrade_case_insensitive", edit: set("Upgrade", "WebSocket")},
		{name: "4.2.1_item3_Upgrade_token_list", edit: set("Upgrade", "h2c, websocket")},
		{name: "4.2.1_item3_Upgrade_repeated_field_lines", edit: set("Upgrade", "h2c", "websocket")},

		// §4.2.1 item 4: Connection includes "Upgrade", case-insensitive.
		{name: "4.2.1_item4_Connection_absent_400", edit: del("Connection"), status: 400, reason: "Connection"},
		{name: "4.2.1_item4_Connection_close_400", edit: set("Connection", "close"), status: 400, reason: "Connection"},
		{name: "4.2.1_item4_Connection_substring_not_token_400", edit: set("Connection", "upgraded"), status: 400, reason: "Connection"},
		{name: "4.2.1_item4_Connection_firefox_list", edit: set("Connection", "keep-alive, Upgrade")},
		{name: "4.2.1_item4_Connection_lowercase", edit: set("Connection", "upgrade")},
		{name: "4.2.1_item4_Connection_repeated_field_lines", edit: set("Connection", "keep-alive", "UPGRADE")},

		// §4.2.1 item 6, §4.2.2 /version/, §4.4: 426 + Sec-WebSocket-Version: 13.
		{name: "4.4_version_absent_426", edit: del("Sec-WebSocket-Version"), status: 426, reason: "13",
			header: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-WebSocket-Version": {"13"}}},
		{name: "4.4_version_8_426", edit: set("Sec-WebSocket-Version", "8"), status: 426, reason: "13",
			header: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-WebSocket-Version": {"13"}}},
		{name: "4.4_version_25_426", edit: set("Sec-WebSocket-Version", "25"), status: 426, reason: "13",
			header: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-WebSocket-Version": {"13"}}},
		{name: "4.4_version_list_426", edit: set("Sec-WebSocket-Version", "13, 8"), status: 426, reason: "13",
			header: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-WebSocket-Version": {"13"}}},
		{name: "4.4_version_repeated_426", edit: set("Sec-WebSocket-Version", "13", "13"), status: 426, reason: "13",
			header: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-WebSocket-Version": {"13"}}},
		{name: "4.4_version_checked_before_key", edit: chain(set("Sec-WebSocket-Version", "7"), del("Sec-WebSocket-Key")),
			status: 426, reason: "13",
			header: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-WebSocket-Version": {"13"}}},

		// §4.2.1 item 5: key is base64 of 16 bytes.
		{name: "4.2.1_item5_key_absent_400", edit: del("Sec-WebSocket-Key"), status: 400, reason: "missing Sec-WebSocket-Key"},
		{name: "4.2.1_item5_key_repeated_400", edit: set("Sec-WebSocket-Key", rfcKey, rfcKey), status: 400, reason: "repeated"},
		{name: "4.2.1_item5_key_empty_400", edit: set("Sec-WebSocket-Key", ""), status: 400, reason: "16 bytes"},
		{name: "4.2.1_item5_key_15_bytes_400", edit: set("Sec-WebSocket-Key", b64(15)), status: 400, reason: "16 bytes"},
		{name: "4.2.1_item5_key_17_bytes_400", edit: set("Sec-WebSocket-Key", b64(17)), status: 400, reason: "16 bytes"},
		{name: "4.2.1_item5_key_unpadded_400", edit: set("Sec-WebSocket-Key", strings.TrimRight(rfcKey, "=")), status: 400, reason: "16 bytes"},
		{name: "4.2.1_item5_key_urlsafe_alphabet_400", edit: set("Sec-WebSocket-Key", "-_-_-_-_-_-_-_-_-_-_-_=="), status: 400, reason: "16 bytes"},
		{name: "4.2.1_item5_key_not_base64_400", edit: set("Sec-WebSocket-Key", "not base64 at all!!!!!=="), status: 400, reason: "16 bytes"},
		{name: "4.2.1_item5_key_24_bytes_no_padding_400", edit: set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAAA"), status: 400, reason: "16 bytes"},
		// §4.1 item 7's own example has non-zero padding bits; accept it.
		{name: "4.1_item7_example_key_accepted", edit: set("Sec-WebSocket-Key", "AQIDBAUGBwgJCgsMDQ4PEC==")},

		// §4.1 item 10: offers are unique tokens; §4.2.1: ABNF violations get 400.
		{name: "4.1_item10_protocols_across_lines", edit: set("Sec-WebSocket-Protocol", "a , b", "c,,", " d"),
			want: &Request{Key: rfcKey, Protocols: []string{"a", "b", "c", "d"}, Origin: "http://example.com"}},
		{name: "4.1_item10_protocol_absent", edit: del("Sec-WebSocket-Protocol"),
			want: &Request{Key: rfcKey, Origin: "http://example.com"}},
		{name: "4.1_item10_protocol_empty_value", edit: set("Sec-WebSocket-Protocol", ""),
			want: &Request{Key: rfcKey, Origin: "http://example.com"}},
		{name: "4.1_item10_protocol_not_token_400", edit: set("Sec-WebSocket-Protocol", "chat", "a/b"), status: 400, reason: "Sec-WebSocket-Protocol"},
		{name: "4.1_item10_protocol_space_inside_400", edit: set("Sec-WebSocket-Protocol", "a b"), status: 400, reason: "Sec-WebSocket-Protocol"},
		{name: "4.1_item10_protocol_duplicate_400", edit: set("Sec-WebSocket-Protocol", "chat, superchat", "chat"), status: 400, reason: "Sec-WebSocket-Protocol"},
		{name: "4.1_item10_protocol_case_distinct", edit: set("Sec-WebSocket-Protocol", "chat, Chat"),
			want: &Request{Key: rfcKey, Protocols: []string{"chat", "Chat"}, Origin: "http://example.com"}},
		{name: "4.1_item10_too_many_protocols_400", edit: set("Sec-WebSocket-Protocol", manyProtocols(maxProtocols+1)), status: 400, reason: "Sec-WebSocket-Protocol"},

		// §9.1: extension offers are kept raw; commas in quoted strings do not split.
		{name: "9.1_extensions_raw", edit: chain(del("Sec-WebSocket-Protocol"), del("Origin"),
			set("Sec-WebSocket-Extensions", `permessage-deflate; client_max_window_bits, x-foo; a="1,2"`, "x-bar")),
			want: &Request{Key: rfcKey, Extensions: []string{"permessage-deflate; client_max_window_bits", `x-foo; a="1,2"`, "x-bar"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, rej := Check(rfcRequest(tc.edit))
			if tc.status == 0 {
				if rej != nil {
					t.Fatalf("rejected %d %q, want accepted", rej.Status, rej.Reason)
				}
				if tc.want != nil && !reflect.DeepEqual(got, *tc.want) {
					t.Fatalf("got %#v\nwant %#v", got, *tc.want)
				}
				return
			}
			if rej == nil {
				t.Fatalf("accepted %#v, want %d", got, tc.status)
			}
			if rej.Status != tc.status || !strings.Contains(rej.Reason, tc.reason) {
				t.Fatalf("got %d %q, want %d containing %q", rej.Status, rej.Reason, tc.status, tc.reason)
			}
			if !reflect.DeepEqual(rej.Header, tc.header) && (len(rej.Header) != 0 || len(tc.header) != 0) {
				t.Fatalf("header %v, want %v", rej.Header, tc.header)
			}
			if !reflect.DeepEqual(got, Request{}) {
				t.Fatalf("rejected request returned data %#v", got)
			}
			if !strings.Contains(rej.Error(), tc.reason) {
				t.Fatalf("Error() = %q lacks the reason", rej.Error())
			}
		})
	}
}

func b64(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }

func manyProtocols(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("p")
		b.WriteString(strings.Repeat("x", i))
	}
	return b.String()
}

// TestAcceptKey_RFC6455_1_3 checks the worked example of RFC 6455 §1.3
// (repeated in §4.2.2's NOTE). The brief quoted
// "s3pPLMBiTxaQ9kVZlJdXY1Ob2qE=", which is not what the RFC prints nor what
// SHA-1 gives; the RFC's value is the one a peer will check against.
func TestAcceptKey_RFC6455_1_3(t *testing.T) {
	t.Parallel()
	if got := AcceptKey(rfcKey); got != rfcAccept {
		t.Fatalf("AcceptKey(%q) = %q, want %q", rfcKey, got, rfcAccept)
	}
	// The SHA-1 bytes printed in §1.3.
	sum, _ := base64.StdEncoding.DecodeString(rfcAccept)
	want := []byte{0xb3, 0x7a, 0x4f, 0x2c, 0xc0, 0x62, 0x4f, 0x16, 0x90, 0xf6, 0x46, 0x06, 0xcf, 0x38, 0x59, 0x45, 0xb2, 0xbe, 0xc4, 0xea}
	if !bytes.Equal(sum, want) {
		t.Fatalf("hash %x, want %x", sum, want)
	}
	// §1.3: the key "minus any leading and trailing whitespace".
	if got := AcceptKey(" \t" + rfcKey + " "); got != rfcAccept {
		t.Fatalf("whitespace not ignored: %q", got)
	}
	// Keys longer than the stack buffer take the slow path, same result.
	long := strings.Repeat("k", 200)
	if AcceptKey(long) != string(appendAccept(nil, long)) || len(AcceptKey(long)) != 28 {
		t.Fatal("long key")
	}
}

// TestAcceptKey_Allocs keeps AcceptKey allocation-light: only the result.
func TestAcceptKey_Allocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = AcceptKey(rfcKey) }); n > 1 {
		t.Fatalf("AcceptKey allocates %v times, want ≤ 1", n)
	}
	var buf [256]byte
	if n := testing.AllocsPerRun(100, func() { _ = AppendResponse101(buf[:0], rfcKey, "chat", nil) }); n != 0 {
		t.Fatalf("AppendResponse101 allocates %v times, want 0", n)
	}
}

// TestCheck_Allocs: a valid request without subprotocols costs nothing.
func TestCheck_Allocs(t *testing.T) {
	r := rfcRequest(del("Sec-WebSocket-Protocol"))
	if n := testing.AllocsPerRun(100, func() { _, _ = Check(r) }); n != 0 {
		t.Fatalf("Check allocates %v times, want 0", n)
	}
}

// TestAppendResponse101_RFC6455_4_2_2 compares the 101 with the one printed
// in RFC 6455 §1.3 (plus the subprotocol line of §4.2.2 step 5.5).
func TestAppendResponse101_RFC6455_4_2_2(t *testing.T) {
	t.Parallel()
	got := string(AppendResponse101(nil, rfcKey, "", nil))
	want := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + rfcAccept + "\r\n\r\n"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	got = string(AppendResponse101([]byte("prefix"), rfcKey, "chat", http.Header{
		"Set-Cookie": {"a=1", "b=2"}, "X-B": {"b"}, "X-A": {"a"},
	}))
	want = "prefix" + strings.TrimSuffix(want, "\r\n") +
		"Sec-WebSocket-Protocol: chat\r\n" +
		"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-A: a\r\nX-B: b\r\n\r\n"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

// TestAppendResponse101_StripsControlChars: values we write have CR, LF,
// NUL, other C0 controls except HTAB, and DEL removed; header names that
// are not tokens are dropped; headers that belong to the handshake itself
// cannot be overridden (RFC 6455 §4.1 client steps 2-6 depend on them).
func TestAppendResponse101_StripsControlChars(t *testing.T) {
	t.Parallel()
	extra := http.Header{
		"Set-Cookie":               {"id=1\r\nX-Injected: yes", "t=\x00\x01\x1f\x7fz\tq", " \r\n"},
		"X-Bad Name":               {"v"},
		"X-Bad\r\nName":            {"v"},
		"":                         {"v"},
		"Connection":               {"close"},
		"upgrade":                  {"h2c"},
		"Sec-WebSocket-Accept":     {"forged"},
		"sec-websocket-extensions": {"permessage-deflate"},
		"Sec-WebSocket-Protocol":   {"other"},
		"Content-Length":           {"10"},
		"Transfer-Encoding":        {"chunked"},
		"Proxy-Connection":         {"keep-alive"},
	}
	out := AppendResponse101(nil, rfcKey, "chat\r\nX-Evil: 1", extra)
	head := string(out)
	if !strings.HasSuffix(head, "\r\n\r\n") || strings.Count(head, "\r\n\r\n") != 1 {
		t.Fatalf("head must end once with CRLF CRLF: %q", head)
	}
	for i := 0; i < len(out); i++ {
		if c := out[i]; isCTL(c) && !(c == '\r' && i+1 < len(out) && out[i+1] == '\n') && !(c == '\n' && i > 0 && out[i-1] == '\r') {
			t.Fatalf("control byte %#x at %d in %q", c, i, head)
		}
	}
	resp, err := ReadResponse(bufio.NewReader(strings.NewReader(head)), 0, 0)
	if err != nil {
		t.Fatalf("our 101 does not parse: %v\n%q", err, head)
	}
	want := http.Header{
		"Upgrade":                {"websocket"},
		"Connection":             {"Upgrade"},
		"Sec-Websocket-Accept":   {rfcAccept},
		"Sec-Websocket-Protocol": {"chatX-Evil: 1"},
		"Set-Cookie":             {"id=1X-Injected: yes", "t=z\tq", ""},
	}
	if !reflect.DeepEqual(resp.Header, want) {
		t.Fatalf("header\n%v\nwant\n%v", resp.Header, want)
	}
}

// TestWriteRejection: status, headers, plain-text reason (docs/handshake.md
// "Rejections": every rejection has a short plain-text body naming the
// reason).
func TestWriteRejection(t *testing.T) {
	t.Parallel()
	_, rej := Check(rfcRequest(set("Sec-WebSocket-Version", "8")))
	rec := httptest.NewRecorder()
	WriteRejection(rec, rej)
	res := rec.Result()
	if res.StatusCode != 426 || res.Header.Get("Sec-WebSocket-Version") != "13" || res.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("got %d %v", res.StatusCode, res.Header)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if body := rec.Body.String(); body != rej.Reason+"\n" {
		t.Fatalf("body %q", body)
	}
	// Even a hand-built rejection cannot inject lines.
	rec = httptest.NewRecorder()
	WriteRejection(rec, &Rejection{Status: 403, Reason: "no\r\nway", Header: http.Header{"X-A": {"1\r\nX-B: 2"}, "Bad Name": {"x"}}})
	if rec.Header().Get("X-A") != "1X-B: 2" || rec.Header()["Bad Name"] != nil || rec.Body.String() != "noway\n" {
		t.Fatalf("got %v %q", rec.Header(), rec.Body.String())
	}
}

// TestWriteRejection_RealServer checks net/http keeps our 426 headers
// (Upgrade and Connection are special to it) on the wire.
func TestWriteRejection_RealServer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, rej := Check(r); rej != nil {
			WriteRejection(w, rej)
		}
	}))
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 426 || res.Header.Get("Upgrade") != "websocket" || !hasToken(res.Header["Connection"], "upgrade") {
		t.Fatalf("got %d %v", res.StatusCode, res.Header)
	}
	if !strings.Contains(string(body), "websocket") {
		t.Fatalf("body %q", body)
	}
}

// upgradeServer runs an http.Server on 127.0.0.1 whose handler does
// Check + Upgrade and hands the result to onConn in the handler goroutine.
func upgradeServer(t *testing.T, configure func(*http.Server), protocol string, extra http.Header,
	onConn func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, rej := Check(r)
		if rej != nil {
			WriteRejection(w, rej)
			return
		}
		c, br, err := Upgrade(w, req, protocol, extra)
		if err != nil {
			t.Errorf("Upgrade: %v", err)
			return
		}
		defer c.Close()
		onConn(c, br)
	})}
	if configure != nil {
		configure(srv)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestUpgrade_RFC6455_4_2_2_Pipelined: over a real http.Server, a client
// that sends its first frame in the same write as its request must find
// it on the server's returned reader; the 101 carries the protocol and the
// extra headers.
func TestUpgrade_RFC6455_4_2_2_Pipelined(t *testing.T) {
	t.Parallel()
	frame := []byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1} // masked "hello"
	got := make(chan []byte, 1)
	addr := upgradeServer(t, nil, "superchat", http.Header{"Set-Cookie": {"s=1"}}, func(c net.Conn, br *bufio.Reader) {
		b := make([]byte, len(frame))
		if _, err := io.ReadFull(br, b); err != nil {
			t.Errorf("read pipelined: %v", err)
		}
		got <- b
		c.Write([]byte("ok"))
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET /chat HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + rfcKey + "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n"
	if _, err := c.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := ReadResponse(br, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != rfcAccept ||
		resp.Header.Get("Sec-WebSocket-Protocol") != "superchat" || resp.Header.Get("Set-Cookie") != "s=1" {
		t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
	}
	if b := <-got; !bytes.Equal(b, frame) {
		t.Fatalf("pipelined bytes %x, want %x", b, frame)
	}
	ok := make([]byte, 2)
	if _, err := io.ReadFull(br, ok); err != nil || string(ok) != "ok" {
		t.Fatalf("after 101: %q %v", ok, err)
	}
}

// TestUpgrade_ClearsServerTimeouts: an http.Server with ReadTimeout and
// WriteTimeout must not kill the connection after the upgrade; a WebSocket
// session outlives any request timeout.
func TestUpgrade_ClearsServerTimeouts(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	done := make(chan error, 1)
	addr := upgradeServer(t, func(s *http.Server) { s.ReadTimeout, s.WriteTimeout = timeout, timeout }, "", nil,
		func(c net.Conn, br *bufio.Reader) {
			time.Sleep(3 * timeout)
			b := make([]byte, 4)
			_, err := io.ReadFull(br, b) // the client writes only after 3×timeout
			if err == nil {
				_, err = c.Write(b)
			}
			done <- err
		})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + rfcKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	c.Write([]byte(req))
	br := bufio.NewReader(c)
	if resp, err := ReadResponse(br, 0, 0); err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v", err)
	}
	time.Sleep(4 * timeout)
	c.Write([]byte("ping"))
	if err := <-done; err != nil {
		t.Fatalf("server side timed out after upgrade: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q %v", b, err)
	}
}

// TestUpgrade_NotHijackable: a ResponseWriter that cannot be hijacked
// (HTTP/2, a recorder) gets a 500 and an error, never a half-written 101.
func TestUpgrade_NotHijackable(t *testing.T) {
	t.Parallel()
	req, _ := Check(rfcRequest(nil))
	rec := httptest.NewRecorder()
	c, br, err := Upgrade(rec, req, "", nil)
	if err == nil || c != nil || br != nil || !errors.Is(err, http.ErrNotSupported) {
		t.Fatalf("got %v %v %v", c, br, err)
	}
	if rec.Code != 500 {
		t.Fatalf("status %d", rec.Code)
	}
}

// TestUpgrade_UnofferedProtocol: RFC 6455 §4.2.2 /subprotocol/ must be
// one the client offered; Upgrade refuses to confirm anything else.
func TestUpgrade_UnofferedProtocol(t *testing.T) {
	t.Parallel()
	req, _ := Check(rfcRequest(nil))
	rec := httptest.NewRecorder()
	if _, _, err := Upgrade(rec, req, "mqtt", nil); err == nil || rec.Code != 500 {
		t.Fatalf("got %v %d", err, rec.Code)
	}
}

// deadlineHijacker wraps a ResponseWriter whose Hijack leaves a short
// deadline on the conn, as a server other than net/http (or a wrapper)
// might. Unwrap lets http.ResponseController find it.
type deadlineHijacker struct {
	http.ResponseWriter
}

func (d deadlineHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(d.ResponseWriter).Hijack()
	if err == nil {
		c.SetDeadline(time.Now().Add(50 * time.Millisecond))
	}
	return c, brw, err
}

// TestUpgrade_ClearsDeadlineLeftByHijacker: Upgrade itself clears the
// deadlines, not only net/http's hijack.
func TestUpgrade_ClearsDeadlineLeftByHijacker(t *testing.T) {
	t.Parallel()
	done := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := Check(r)
		c, br, err := Upgrade(deadlineHijacker{w}, req, "", nil)
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		b := make([]byte, 1)
		_, err = io.ReadFull(br, b) // the client writes after 200 ms
		done <- err
	}))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + rfcKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	time.Sleep(200 * time.Millisecond)
	c.Write([]byte("x"))
	if err := <-done; err != nil {
		t.Fatalf("deadline survived Upgrade: %v", err)
	}
}

// TestUpgrade_RequestNotFromCheck: a zero Request has no valid key; the
// client must not get a 101 whose accept it would fail (RFC 6455 §4.1).
func TestUpgrade_RequestNotFromCheck(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	if _, _, err := Upgrade(rec, Request{}, "", nil); err == nil || rec.Code != 500 {
		t.Fatalf("got %v %d", err, rec.Code)
	}
}

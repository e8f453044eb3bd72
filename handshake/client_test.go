package handshake

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rawUpstream is a hand-written upstream on 127.0.0.1: for each connection
// it reads the request head (raw bytes and parsed) and calls handle, which
// writes whatever bytes the test wants.
type rawUpstream struct {
	addr string
	mu   sync.Mutex
	raw  []string // request heads received, in order
}

func newRawUpstream(t *testing.T, handle func(c net.Conn, req *http.Request)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				var head bytes.Buffer
				req, err := http.ReadRequest(bufio.NewReader(io.TeeReader(c, &head)))
				if err != nil {
					t.Errorf("upstream: read request: %v", err)
					return
				}
				u.mu.Lock()
				u.raw = append(u.raw, head.String())
				u.mu.Unlock()
				handle(c, req)
			}()
		}
	}()
	return u
}

func (u *rawUpstream) heads() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.raw)
}

func (u *rawUpstream) url(path string) *url.URL {
	return &url.URL{Scheme: "ws", Host: u.addr, Path: path}
}

// accept101 is a correct 101 for req (RFC 6455 §4.2.2 step 5) plus extra
// header lines.
func accept101(req *http.Request, extra ...string) string {
	s := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + AcceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n"
	for _, l := range extra {
		s += l + "\r\n"
	}
	return s + "\r\n"
}

// waitClosed reports whether the peer closed c within a while.
func waitClosed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	return err == nil // EOF, not a timeout
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestDial_RFC6455_4_1_Success: the request is a valid client handshake
// (checked with our own Check), the 101 is accepted, the chosen protocol
// and the 101's headers are reported, a frame sent in the same write as
// the 101 is readable from Upstream.Reader, and the handshake deadline is
// gone afterwards.
func TestDial_RFC6455_4_1_Success(t *testing.T) {
	t.Parallel()
	frame := []byte{0x81, 0x02, 'h', 'i'}
	later := make(chan struct{})
	up := newRawUpstream(t, func(c net.Conn, req *http.Request) {
		if _, rej := Check(req); rej != nil {
			t.Errorf("our request fails Check: %v", rej)
		}
		if req.RequestURI != "/chat?room=1&x=%20y" || req.Proto != "HTTP/1.1" {
			t.Errorf("request line %s %s", req.RequestURI, req.Proto)
		}
		if got := req.Header.Values("Sec-WebSocket-Protocol"); !reflect.DeepEqual(got, []string{"chat, superchat"}) {
			t.Errorf("protocol offer %q", got)
		}
		c.Write(append([]byte(accept101(req, "Sec-WebSocket-Protocol: chat", "Set-Cookie: a=1", "Set-Cookie: b=2")), frame...))
		<-later
		c.Write([]byte("late"))
		waitClosed(c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	u := up.url("/chat")
	u.RawQuery = "room=1&x=%20y"
	s, err := (&Dialer{}).Dial(ctx, u, nil, []string{"chat", "superchat"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Conn.Close()
	if s.Protocol != "chat" || !reflect.DeepEqual(s.Header.Values("Set-Cookie"), []string{"a=1", "b=2"}) {
		t.Fatalf("got %q %v", s.Protocol, s.Header)
	}
	b := make([]byte, len(frame))
	if _, err := io.ReadFull(s.Reader, b); err != nil || !bytes.Equal(b, frame) {
		t.Fatalf("frame after 101: %x %v", b, err)
	}
	// ctx's deadline has passed: the conn must not have kept it.
	<-ctx.Done()
	time.Sleep(50 * time.Millisecond)
	close(later)
	b = make([]byte, 4)
	if _, err := io.ReadFull(s.Reader, b); err != nil || string(b) != "late" {
		t.Fatalf("read after ctx deadline: %q %v", b, err)
	}
}

// TestDial_Bad101 covers the client-side checks of RFC 6455 §4.1 (steps
// 2-6) and a malformed response; each must fail with its sentinel and
// close the connection.
func TestDial_Bad101(t *testing.T) {
	t.Parallel()
	okAccept := func(r *http.Request) string {
		return "Sec-WebSocket-Accept: " + AcceptKey(r.Header.Get("Sec-WebSocket-Key"))
	}
	const head = "HTTP/1.1 101 Switching Protocols\r\n"
	cases := []struct {
		name   string
		offer  []string
		answer func(r *http.Request) string
		want   error // nil: success
	}{
		{"4.1_step2_Upgrade_missing", nil, func(r *http.Request) string {
			return head + "Connection: Upgrade\r\n" + okAccept(r) + "\r\n\r\n"
		}, ErrBadUpgrade},
		{"4.1_step2_Upgrade_h2c", nil, func(r *http.Request) string {
			return head + "Upgrade: h2c\r\nConnection: Upgrade\r\n" + okAccept(r) + "\r\n\r\n"
		}, ErrBadUpgrade},
		{"4.1_step3_Connection_missing", nil, func(r *http.Request) string {
			return head + "Upgrade: websocket\r\n" + okAccept(r) + "\r\n\r\n"
		}, ErrBadUpgrade},
		{"4.1_step3_Connection_close", nil, func(r *http.Request) string {
			return head + "Upgrade: websocket\r\nConnection: close\r\n" + okAccept(r) + "\r\n\r\n"
		}, ErrBadUpgrade},
		{"4.1_steps2-3_case_insensitive_ok", nil, func(r *http.Request) string {
			return head + "upgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n" + okAccept(r) + "\r\n\r\n"
		}, nil},
		{"4.1_step4_accept_wrong", nil, func(r *http.Request) string {
			return head + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + rfcAccept + "\r\n\r\n"
		}, ErrBadAccept},
		{"4.1_step4_accept_missing", nil, func(r *http.Request) string {
			return head + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
		}, ErrBadAccept},
		{"4.1_step4_accept_repeated", nil, func(r *http.Request) string {
			return head + "Upgrade: websocket\r\nConnection: Upgrade\r\n" + okAccept(r) + "\r\n" + okAccept(r) + "\r\n\r\n"
		}, ErrBadAccept},
		{"4.1_step4_accept_of_raw_key_bytes", nil, func(r *http.Request) string {
			raw, _ := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key"))
			return head + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + AcceptKey(string(raw)) + "\r\n\r\n"
		}, ErrBadAccept},
		{"4.1_step5_extension", nil, func(r *http.Request) string {
			return head + "Upgrade: websocket\r\nConnection: Upgrade\r\n" + okAccept(r) + "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
		}, ErrBadExtension},
		{"4.1_step6_protocol_not_offered", []string{"chat"}, func(r *http.Request) string {
			return head + "Upgrade: websocket\r\nConnection: Upgrade\r\n" + okAccept(r) + "\r\nSec-WebSocket-Protocol: superchat\r\n\r\n"
		}, ErrBadProtocol},
		{"4.1_step6_protocol_when_none_offered", nil, func(r *http.Request) string {
			return head + "Upgrade: websocket\r\nConnection: Upgrade\r\n" + okAccept(r) + "\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
		}, ErrBadProtocol},
		{"4.1_step6_protocol_list", []string{"chat", "superchat"}, func(r *http.Request) string {
			return head + "Upgrade: websocket\r\nConnection: Upgrade\r\n" + okAccept(r) + "\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n"
		}, ErrBadProtocol},
		{"4.1_step6_protocol_empty", []string{"chat"}, func(r *http.Request) string {
			return head + "Upgrade: websocket\r\nConnection: Upgrade\r\n" + okAccept(r) + "\r\nSec-WebSocket-Protocol:\r\n\r\n"
		}, ErrBadProtocol},
		{"4.1_step6_protocol_case_differs", []string{"chat"}, func(r *http.Request) string {
			return head + "Upgrade: websocket\r\nConnection: Upgrade\r\n" + okAccept(r) + "\r\nSec-WebSocket-Protocol: Chat\r\n\r\n"
		}, ErrBadProtocol},
		{"malformed_status_line", nil, func(r *http.Request) string { return "HTTP/2 101\r\n\r\n" }, ErrBadResponse},
		{"malformed_header", nil, func(r *http.Request) string {
			return head + "Upgrade : websocket\r\n\r\n"
		}, ErrBadResponse},
		{"closed_before_answer", nil, func(r *http.Request) string { return "" }, io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			closed := make(chan bool, 1)
			up := newRawUpstream(t, func(c net.Conn, req *http.Request) {
				answer := tc.answer(req)
				c.Write([]byte(answer))
				if answer == "" || tc.want == nil {
					closed <- true
					return
				}
				closed <- waitClosed(c)
			})
			s, err := (&Dialer{}).Dial(testCtx(t), up.url("/"), nil, tc.offer)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				s.Conn.Close()
				return
			}
			if !errors.Is(err, tc.want) || s != nil {
				t.Fatalf("got %v, %v; want %v", s, err, tc.want)
			}
			var se *StatusError
			if errors.As(err, &se) {
				t.Fatalf("protocol violation reported as StatusError: %v", err)
			}
			if !<-closed {
				t.Fatal("connection not closed after the error")
			}
		})
	}
}

// TestDial_StatusError_RFC6455_4_1_step1: a non-101 answer "is handled per
// HTTP": the gateway gets the status, headers and a bounded body.
func TestDial_StatusError_RFC6455_4_1_step1(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("0123456789abcdef", 256) // 4 KiB
	chunked := func(s string) string {
		var b strings.Builder
		for len(s) > 0 {
			n := min(len(s), 1000)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, s[:n])
			s = s[n:]
		}
		return b.String() + "0\r\n\r\n"
	}
	const h403 = "HTTP/1.1 403 Forbidden\r\nWWW-Authenticate: Bearer realm=\"ws\"\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nRetry-After: 5\r\n"
	cases := []struct {
		name     string
		answer   string
		maxBody  int
		status   int
		wantBody string
	}{
		{"content_length_truncated_to_1KiB", h403 + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body, 0, 403, body[:1024]},
		{"chunked_truncated_to_1KiB", h403 + "Transfer-Encoding: chunked\r\n\r\n" + chunked(body), 0, 403, body[:1024]},
		{"close_delimited_truncated_to_1KiB", h403 + "\r\n" + body, 0, 403, body[:1024]},
		{"custom_MaxBodyBytes", h403 + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body, 10, 403, body[:10]},
		{"short_body_whole", h403 + "Content-Length: 9\r\n\r\nforbidden", 0, 403, "forbidden"},
		{"no_body_401", "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n", 0, 401, ""},
		{"redirect_302", "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n", 0, 302, ""},
		{"http10_500", "HTTP/1.0 500 Internal Server Error\r\n\r\noops", 0, 500, "oops"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newRawUpstream(t, func(c net.Conn, req *http.Request) {
				c.Write([]byte(tc.answer))
			})
			s, err := (&Dialer{MaxBodyBytes: tc.maxBody}).Dial(testCtx(t), up.url("/"), nil, nil)
			var se *StatusError
			if s != nil || !errors.As(err, &se) {
				t.Fatalf("got %v %v, want StatusError", s, err)
			}
			if se.StatusCode != tc.status || string(se.Body) != tc.wantBody {
				t.Fatalf("got %d %q (%d bytes)", se.StatusCode, se.Body, len(se.Body))
			}
			if tc.status == 403 {
				if se.Header.Get("WWW-Authenticate") != `Bearer realm="ws"` || se.Header.Get("Retry-After") != "5" ||
					!reflect.DeepEqual(se.Header.Values("Set-Cookie"), []string{"a=1", "b=2"}) {
					t.Fatalf("headers %v", se.Header)
				}
			}
			if tc.status == 302 && se.Header.Get("Location") != "/elsewhere" {
				t.Fatalf("headers %v", se.Header)
			}
			if !strings.Contains(se.Error(), fmt.Sprint(tc.status)) {
				t.Fatalf("Error() %q", se.Error())
			}
		})
	}
}

// TestDial_ResponseTooLarge: a head over MaxResponseBytes fails before it
// is read whole, whatever the status.
func TestDial_ResponseTooLarge(t *testing.T) {
	t.Parallel()
	big := "X-Big: " + strings.Repeat("a", 64<<10) + "\r\n"
	cases := []struct {
		name   string
		max    int
		answer func(r *http.Request) string
		want   error
	}{
		{"101_default_16KiB", 0, func(r *http.Request) string { return accept101(r, strings.TrimSuffix(big, "\r\n")) }, ErrResponseTooLarge},
		{"403_default_16KiB", 0, func(r *http.Request) string { return "HTTP/1.1 403 Forbidden\r\n" + big + "\r\n" }, ErrResponseTooLarge},
		{"many_small_headers", 0, func(r *http.Request) string {
			return "HTTP/1.1 101 Switching Protocols\r\n" + strings.Repeat("X-A: b\r\n", 4000) + "\r\n"
		}, ErrResponseTooLarge},
		{"custom_bound_1KiB", 1024, func(r *http.Request) string {
			return accept101(r, "X-Pad: "+strings.Repeat("p", 1024))
		}, ErrResponseTooLarge},
		{"just_under_custom_bound", 1024, func(r *http.Request) string {
			h := accept101(r)
			return accept101(r, "X-Pad: "+strings.Repeat("p", 1024-len(h)-len("X-Pad: \r\n")))
		}, nil},
		{"endless_status_line", 0, func(r *http.Request) string { return "HTTP/1.1 101 " + strings.Repeat("S", 1<<20) }, ErrResponseTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newRawUpstream(t, func(c net.Conn, req *http.Request) {
				c.Write([]byte(tc.answer(req)))
			})
			s, err := (&Dialer{MaxResponseBytes: tc.max}).Dial(testCtx(t), up.url("/"), nil, nil)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				s.Conn.Close()
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// isTimeout is how the gateway classifies a 504.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// TestDial_Timeout: an upstream that accepts and never answers costs the
// ctx deadline, no more, and the error classifies as a timeout both ways.
func TestDial_Timeout(t *testing.T) {
	t.Parallel()
	closed := make(chan bool, 1)
	up := newRawUpstream(t, func(c net.Conn, req *http.Request) { closed <- waitClosed(c) })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	s, err := (&Dialer{}).Dial(ctx, up.url("/"), nil, nil)
	if s != nil || err == nil {
		t.Fatal("dial succeeded")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %v", el)
	}
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("not classified as timeout: %v", err)
	}
	if !<-closed {
		t.Fatal("conn not closed")
	}
}

// TestDial_TimeoutInConnect: a dial that stalls until ctx ends (a
// black-holed address) is a timeout too.
func TestDial_TimeoutInConnect(t *testing.T) {
	t.Parallel()
	d := &Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return (&net.Dialer{}).DialContext(ctx, network, addr) // returns net's own error for an ended ctx
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := d.Dial(ctx, &url.URL{Scheme: "ws", Host: "192.0.2.1"}, nil, nil)
	if !isTimeout(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("not a timeout: %v", err)
	}
}

// TestDial_Canceled: cancelling ctx (shutdown) aborts a pending handshake.
func TestDial_Canceled(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(c net.Conn, req *http.Request) { waitClosed(c) })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := (&Dialer{}).Dial(ctx, up.url("/"), nil, nil)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
}

// TestDial_ErrorClassification: the causes the gateway maps to 503 and 502
// stay reachable through the wrapping.
func TestDial_ErrorClassification(t *testing.T) {
	t.Parallel()
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE} {
		d := &Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", errno)}
		}}
		_, err := d.Dial(testCtx(t), &url.URL{Scheme: "ws", Host: "up.example"}, nil, nil)
		if !errors.Is(err, errno) || isTimeout(err) {
			t.Fatalf("%v: got %v", errno, err)
		}
		if !strings.Contains(err.Error(), "up.example:80") {
			t.Fatalf("error lacks the address: %v", err)
		}
	}
	// A closed port: refused, not a timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = (&Dialer{}).Dial(testCtx(t), &url.URL{Scheme: "ws", Host: addr}, nil, nil)
	if !errors.Is(err, syscall.ECONNREFUSED) || isTimeout(err) {
		t.Fatalf("refused: got %v", err)
	}
}

// countingReader yields 0, 1, 2, … so keys are predictable.
type countingReader struct{ n byte }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n++
	}
	return len(p), nil
}

// TestDial_FreshKeyPerDial_RFC6455_4_1_item7: "The nonce MUST be selected
// randomly for each connection": each dial draws 16 new bytes from Rand.
func TestDial_FreshKeyPerDial_RFC6455_4_1_item7(t *testing.T) {
	t.Parallel()
	keys := make(chan string, 4)
	up := newRawUpstream(t, func(c net.Conn, req *http.Request) {
		keys <- req.Header.Get("Sec-WebSocket-Key")
		c.Write([]byte(accept101(req)))
	})
	d := &Dialer{Rand: &countingReader{}}
	for i := range 2 {
		s, err := d.Dial(testCtx(t), up.url("/"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Conn.Close()
		want := make([]byte, 16)
		for j := range want {
			want[j] = byte(16*i + j)
		}
		if got := <-keys; got != base64.StdEncoding.EncodeToString(want) {
			t.Fatalf("dial %d: key %q, want base64 of %x", i, got, want)
		}
	}
	// The default source is crypto/rand: two dials, two keys.
	for range 2 {
		s, err := (&Dialer{}).Dial(testCtx(t), up.url("/"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Conn.Close()
	}
	if a, b := <-keys, <-keys; a == b || !validKey(a) || !validKey(b) {
		t.Fatalf("keys %q %q", a, b)
	}
	// A failing source fails the dial before any connection is made.
	dialed := false
	d = &Dialer{Rand: iotestErrReader{}, NetDialContext: func(context.Context, string, string) (net.Conn, error) {
		dialed = true
		return nil, errors.New("unreachable")
	}}
	if _, err := d.Dial(testCtx(t), up.url("/"), nil, nil); !errors.Is(err, errRand) || dialed {
		t.Fatalf("got %v dialed=%v", err, dialed)
	}
}

var errRand = errors.New("no entropy")

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errRand }

// TestDial_HeaderForwarding: end-to-end headers arrive as given; Host,
// hop-by-hop, framing and the client's Sec-WebSocket-* headers are dropped
// (docs/handshake.md), and control characters are stripped.
func TestDial_HeaderForwarding(t *testing.T) {
	t.Parallel()
	got := make(chan *http.Request, 1)
	up := newRawUpstream(t, func(c net.Conn, req *http.Request) {
		got <- req
		c.Write([]byte(accept101(req, "Sec-WebSocket-Protocol: v2")))
	})
	header := http.Header{
		"Cookie":                   {"sid=1"},
		"Authorization":            {"Bearer t"},
		"X-Custom":                 {"one", "two"},
		"X-Forwarded-For":          {"203.0.113.7"},
		"X-Inject":                 {"a\r\nX-Evil: 1"},
		"Host":                     {"client.example"},
		"Connection":               {"keep-alive, X-Custom"},
		"Upgrade":                  {"h2c"},
		"Keep-Alive":               {"timeout=5"},
		"Proxy-Authorization":      {"Basic x"},
		"Proxy-Connection":         {"keep-alive"},
		"Te":                       {"trailers"},
		"Trailer":                  {"X-T"},
		"Transfer-Encoding":        {"chunked"},
		"Content-Length":           {"5"},
		"Sec-Websocket-Key":        {rfcKey},
		"Sec-Websocket-Accept":     {rfcAccept},
		"Sec-Websocket-Extensions": {"permessage-deflate"},
		"Sec-Websocket-Protocol":   {"client-choice"},
		"sec-websocket-version":    {"8"},
		"Bad Name":                 {"x"},
	}
	before := header.Clone()
	s, err := (&Dialer{}).Dial(testCtx(t), up.url("/"), header, []string{"v1", "v2"})
	if err != nil {
		t.Fatal(err)
	}
	s.Conn.Close()
	if !reflect.DeepEqual(header, before) {
		t.Fatal("Dial modified the caller's header")
	}
	req := <-got
	want := http.Header{
		"Cookie":                 {"sid=1"},
		"Authorization":          {"Bearer t"},
		"X-Custom":               {"one", "two"},
		"X-Forwarded-For":        {"203.0.113.7"},
		"X-Inject":               {"aX-Evil: 1"},
		"Upgrade":                {"websocket"},
		"Connection":             {"Upgrade"},
		"Sec-Websocket-Key":      {req.Header.Get("Sec-Websocket-Key")},
		"Sec-Websocket-Version":  {"13"},
		"Sec-Websocket-Protocol": {"v1, v2"},
	}
	if !reflect.DeepEqual(req.Header, want) {
		t.Fatalf("upstream saw\n%v\nwant\n%v", req.Header, want)
	}
	if req.Host != up.addr || req.Header.Get("Sec-Websocket-Key") == rfcKey {
		t.Fatalf("Host %q key %q", req.Host, req.Header.Get("Sec-Websocket-Key"))
	}
	if h := up.heads()[0]; strings.Count(h, "\r\n") != strings.Count(h, "\n") || strings.Count(h, "Host:") != 1 {
		t.Fatalf("raw head %q", h)
	}
}

// TestParseTarget_RFC6455_3: resource name, dialled address and Host
// (RFC 6455 §4.1 item 4: "/host/ plus optionally ":" followed by /port/
// (when not using the default port)").
func TestParseTarget_RFC6455_3(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in                   string
		addr, host, uri, sni string
		secure               bool
	}{
		{"ws://example.com/chat", "example.com:80", "example.com", "/chat", "example.com", false},
		{"ws://example.com:80/chat", "example.com:80", "example.com", "/chat", "example.com", false},
		{"ws://example.com:8080", "example.com:8080", "example.com:8080", "/", "example.com", false},
		{"ws://example.com:443/", "example.com:443", "example.com:443", "/", "example.com", false},
		{"wss://example.com/", "example.com:443", "example.com", "/", "example.com", true},
		{"wss://example.com:443/a?b=c", "example.com:443", "example.com", "/a?b=c", "example.com", true},
		{"wss://example.com:80/", "example.com:80", "example.com:80", "/", "example.com", true},
		{"WSS://Example.COM:8443/x", "Example.COM:8443", "Example.COM:8443", "/x", "Example.COM", true},
		{"ws://[::1]/", "[::1]:80", "[::1]", "/", "::1", false},
		{"ws://[::1]:9000/x?y=1", "[::1]:9000", "[::1]:9000", "/x?y=1", "::1", false},
		{"ws://h/a%20b?q=%20x", "h:80", "h", "/a%20b?q=%20x", "h", false},
		{"ws://h/p#frag", "h:80", "h", "/p", "h", false},
		{"ws://h?only=query", "h:80", "h", "/?only=query", "h", false},
	}
	for _, tc := range cases {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseTarget(u)
		want := target{secure: tc.secure, hostname: tc.sni, addr: tc.addr, hostHeader: tc.host, requestURI: tc.uri}
		if err != nil || got != want {
			t.Errorf("%s: got %+v %v\nwant %+v", tc.in, got, err, want)
		}
	}
	for _, bad := range []*url.URL{
		nil,
		{Scheme: "http", Host: "h"},
		{Scheme: "wss"},
		{Scheme: "ws", Host: ":80"},
		{Scheme: "ws", Host: "h", Path: "/", RawQuery: "a b"},
		{Scheme: "ws", Host: "h", Path: "/", RawQuery: "a\r\nX: y"},
		{Scheme: "ws", Opaque: "opaque"},
	} {
		if _, err := parseTarget(bad); !errors.Is(err, ErrBadURL) {
			t.Errorf("%v: got %v, want ErrBadURL", bad, err)
		}
		if _, err := (&Dialer{}).Dial(context.Background(), bad, nil, nil); !errors.Is(err, ErrBadURL) {
			t.Errorf("Dial %v: got %v", bad, err)
		}
	}
}

// TestDial_HostHeader_RFC6455_4_1_item4 checks on the wire that Dial
// connects to the URL's address and sends Host without a default port.
func TestDial_HostHeader_RFC6455_4_1_item4(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(c net.Conn, req *http.Request) { c.Write([]byte(accept101(req))) })
	for _, tc := range []struct{ url, addr, host, line string }{
		{"ws://upstream.test/chat", "upstream.test:80", "upstream.test", "GET /chat HTTP/1.1"},
		{"ws://upstream.test:80/chat?a=1", "upstream.test:80", "upstream.test", "GET /chat?a=1 HTTP/1.1"},
		{"ws://upstream.test:9000", "upstream.test:9000", "upstream.test:9000", "GET / HTTP/1.1"},
		{"ws://[2001:db8::1]:80/", "[2001:db8::1]:80", "[2001:db8::1]", "GET / HTTP/1.1"},
	} {
		var dialed string
		d := &Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed = addr
			return (&net.Dialer{}).DialContext(ctx, network, up.addr)
		}}
		u, _ := url.Parse(tc.url)
		s, err := d.Dial(testCtx(t), u, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Conn.Close()
		heads := up.heads()
		head := heads[len(heads)-1]
		if dialed != tc.addr || !strings.HasPrefix(head, tc.line+"\r\nHost: "+tc.host+"\r\n") {
			t.Errorf("%s: dialed %q, head %q", tc.url, dialed, head)
		}
	}
}

// TestDial_InterimResponsesSkipped: RFC 9110 §15.2 — 1xx responses other
// than 101 come before the final answer and are skipped.
func TestDial_InterimResponsesSkipped(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(c net.Conn, req *http.Request) {
		c.Write([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + accept101(req)))
	})
	s, err := (*Dialer)(nil).Dial(testCtx(t), up.url("/"), nil, nil) // a nil *Dialer works
	if err != nil {
		t.Fatal(err)
	}
	s.Conn.Close()
	if s.Header.Get("Link") != "" {
		t.Fatal("interim headers leaked into the 101's")
	}
}

// TestDial_InvalidOffer: offers must be tokens (RFC 6455 §4.1 item 10);
// an invalid one fails before dialling.
func TestDial_InvalidOffer(t *testing.T) {
	t.Parallel()
	d := &Dialer{NetDialContext: func(context.Context, string, string) (net.Conn, error) {
		t.Error("dialled")
		return nil, errors.New("no")
	}}
	for _, p := range []string{"", "a b", "a,b", "x\r\ny"} {
		if _, err := d.Dial(testCtx(t), &url.URL{Scheme: "ws", Host: "h"}, nil, []string{p}); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

// tlsUpstream is an httptest TLS server whose handler does Check +
// Upgrade, recording the ClientHello's ALPN offer and SNI.
func tlsUpstream(t *testing.T) (srv *httptest.Server, hello chan *tls.ClientHelloInfo, hosts chan string) {
	hello = make(chan *tls.ClientHelloInfo, 4)
	hosts = make(chan string, 4)
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host
		req, rej := Check(r)
		if rej != nil {
			WriteRejection(w, rej)
			return
		}
		var protocol string
		if len(req.Protocols) > 0 {
			protocol = req.Protocols[0]
		}
		c, _, err := Upgrade(w, req, protocol, nil)
		if err == nil {
			waitClosed(c)
			c.Close()
		}
	}))
	srv.TLS = &tls.Config{
		NextProtos: []string{"h2", "http/1.1"}, // would pick h2 if offered
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			hello <- chi
			return nil, nil
		},
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected TLS handshake failures
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, hello, hosts
}

// TestDial_WSS_ALPN: over wss:// the client offers ALPN "http/1.1" only
// (an h2 upstream would not understand an HTTP/1.1 Upgrade), sends SNI
// (RFC 6455 §4.1: "Clients MUST use the Server Name Indication
// extension"), and leaves the caller's TLSConfig untouched.
func TestDial_WSS_ALPN(t *testing.T) {
	t.Parallel()
	srv, hello, hosts := tlsUpstream(t)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	cfg := &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}}
	d := &Dialer{TLSConfig: cfg, NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != "example.com:443" {
			t.Errorf("dialled %q", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}}
	u, _ := url.Parse("wss://example.com/chat") // httptest's certificate is valid for example.com
	s, err := d.Dial(testCtx(t), u, nil, []string{"chat"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Conn.Close()
	chi := <-hello
	if !reflect.DeepEqual(chi.SupportedProtos, []string{"http/1.1"}) || chi.ServerName != "example.com" {
		t.Fatalf("ClientHello ALPN %q SNI %q", chi.SupportedProtos, chi.ServerName)
	}
	tc, ok := s.Conn.(*tls.Conn)
	if !ok || tc.ConnectionState().NegotiatedProtocol != "http/1.1" {
		t.Fatalf("conn %T", s.Conn)
	}
	if h := <-hosts; h != "example.com" || s.Protocol != "chat" {
		t.Fatalf("Host %q protocol %q", h, s.Protocol)
	}
	if !reflect.DeepEqual(cfg.NextProtos, []string{"h2", "http/1.1"}) || cfg.ServerName != "" {
		t.Fatal("caller's TLSConfig was modified")
	}
}

// TestDial_WSS_UntrustedCert: a TLS failure is an error, not a StatusError,
// and not a timeout.
func TestDial_WSS_UntrustedCert(t *testing.T) {
	t.Parallel()
	srv, _, _ := tlsUpstream(t)
	u, _ := url.Parse("wss://" + srv.Listener.Addr().String() + "/")
	_, err := (&Dialer{}).Dial(testCtx(t), u, nil, nil)
	var ce *tls.CertificateVerificationError
	if !errors.As(err, &ce) || isTimeout(err) {
		t.Fatalf("got %v", err)
	}
}

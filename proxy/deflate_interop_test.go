package proxy

// permessage-deflate through the gateway between third-party peers: the
// same library as client and as upstream, compression negotiated end to
// end and checked on the wire at both ends (RSV1 on the first frame of
// every message, fewer bytes than the payload, fragmented messages).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"

	"wsgate/frame"
)

// wireTap records the bytes read from every connection it wraps.
type wireTap struct {
	mu    sync.Mutex
	conns []*bytes.Buffer
}

type tapConn struct {
	net.Conn
	tap *wireTap
	buf *bytes.Buffer
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.tap.mu.Lock()
	c.buf.Write(p[:n])
	c.tap.mu.Unlock()
	return n, err
}

func (w *wireTap) wrap(c net.Conn) net.Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := &bytes.Buffer{}
	w.conns = append(w.conns, b)
	return &tapConn{Conn: c, tap: w, buf: b}
}

type tapListener struct {
	net.Listener
	tap *wireTap
}

func (l tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.tap.wrap(c), nil
}

// wireStats is what the frames on a tapped connection show.
type wireStats struct {
	messages, compressed, fragmented int
	wireBytes                        int64 // payload bytes of data frames
	badRsv                           int   // RSV1 on a continuation or control frame
}

// stats parses the frames read on the tap's first connection (after the
// HTTP head).
func (w *wireTap) stats(t testing.TB) wireStats {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.conns) == 0 {
		t.Fatal("no connection tapped")
	}
	b := w.conns[0].Bytes()
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatal("no HTTP head on the tapped connection")
	}
	b = b[i+4:]
	var s wireStats
	frames := 0
	for len(b) > 0 {
		h, n, err := frame.DecodeHeader(b, frame.Rules{AllowRsv: frame.Rsv1})
		if err != nil || int64(len(b)-n) < h.Length {
			break // the end of what was read
		}
		b = b[n+int(h.Length):]
		switch {
		case h.Opcode == frame.OpText || h.Opcode == frame.OpBinary:
			s.messages++
			frames = 1
			if h.Rsv&frame.Rsv1 != 0 {
				s.compressed++
			}
			s.wireBytes += h.Length
		case h.Opcode == frame.OpContinuation:
			frames++
			if frames == 2 {
				s.fragmented++
			}
			if h.Rsv != 0 {
				s.badRsv++
			}
			s.wireBytes += h.Length
		case h.Rsv != 0:
			s.badRsv++
		}
	}
	return s
}

// checkWire: every data message on the tap was compressed, at least one
// came in several frames, RSV1 only on first frames, and the payload on
// the wire is smaller than what it inflates to.
func checkWire(t testing.TB, what string, tap *wireTap, messages int, payload int64) {
	t.Helper()
	s := tap.stats(t)
	t.Logf("%s: %+v, payload %d", what, s, payload)
	if s.messages != messages || s.compressed != messages || s.badRsv != 0 || s.fragmented == 0 {
		t.Errorf("%s: %+v, want %d messages all compressed, some fragmented", what, s, messages)
	}
	if s.wireBytes >= payload {
		t.Errorf("%s: %d bytes on the wire for %d of payload", what, s.wireBytes, payload)
	}
}

// interopMessages are what each interop client sends (and gets echoed):
// JSON-like text, compressible binary, and a large text message that
// compresses to more than a write buffer, so it goes out in several frames.
func interopMessages() (msgs [][]byte, types []int, total int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("user room message hello world typing presence ack id ts seq ok error retry join leave")
	var big strings.Builder
	for big.Len() < 256<<10 {
		big.WriteString(words[rng.IntN(len(words))])
		big.WriteString(strings.Repeat(" ", 1+rng.IntN(2)))
		fmt.Fprintf(&big, "%d ", rng.IntN(1000))
	}
	for i := range 5 {
		msgs = append(msgs, []byte(fmt.Sprintf(`{"seq":%d,"room":"lobby","user":"ada","text":%q}`, i, strings.Repeat("hello world ", 60))))
		types = append(types, websocket.TextMessage)
	}
	msgs = append(msgs, bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7, 0xff}, 1000))
	types = append(types, websocket.BinaryMessage)
	msgs = append(msgs, []byte(big.String()))
	types = append(types, websocket.TextMessage)
	for _, m := range msgs {
		total += int64(len(m))
	}
	return msgs, types, total
}

// TestDeflateGorilla: gorilla/websocket with EnableCompression on both
// ends (it compresses without context takeover).
func TestDeflateGorilla(t *testing.T) {
	t.Parallel()
	upURL, upTap := newDeflateGorillaUpstream(t)
	gw := startGateway(t, relayYAML(upURL, "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"))

	clTap := &wireTap{}
	d := websocket.Dialer{EnableCompression: true, NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return clTap.wrap(c), nil
	}}
	c, resp, err := d.Dial(gw.URL+"/g", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
		t.Fatalf("client 101 Sec-WebSocket-Extensions = %q", ext)
	}
	msgs, types, total := interopMessages()
	_ = c.SetReadDeadline(time.Now().Add(relayIO))
	for i, m := range msgs {
		if err := c.WriteMessage(types[i], m); err != nil {
			t.Fatal(err)
		}
		op, p, err := c.ReadMessage()
		if err != nil || op != types[i] || !bytes.Equal(p, m) {
			t.Fatalf("echo %d: op %d, %d bytes, %v", i, op, len(p), err)
		}
	}
	if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye")); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1000 {
		t.Fatalf("close: %v", err)
	}
	expectLog(t, gw, "reason", "normal", "compression", "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
	checkWire(t, "client -> upstream (read by the upstream)", upTap, len(msgs), total)
	checkWire(t, "upstream -> client (read by the client)", clTap, len(msgs), total)
}

// TestDeflateCoder: coder/websocket on both ends, in both of its modes;
// context takeover needs the route's context_takeover: true.
func TestDeflateCoder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode     coder.CompressionMode
		takeover string
		want     string
	}{
		{coder.CompressionNoContextTakeover, "false", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{coder.CompressionContextTakeover, "true", "permessage-deflate"},
	} {
		t.Run(tc.takeover, func(t *testing.T) {
			t.Parallel()
			upURL, upTap := newDeflateCoderUpstream(t, tc.mode)
			gw := startGateway(t, relayYAML(upURL, "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB",
				"permessage_deflate", "{context_takeover: "+tc.takeover+"}"))

			clTap := &wireTap{}
			hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return clTap.wrap(c), nil
			}}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, resp, err := coder.Dial(ctx, gw.URL+"/c", &coder.DialOptions{HTTPClient: hc, CompressionMode: tc.mode, CompressionThreshold: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			c.SetReadLimit(1 << 20)
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != tc.want {
				t.Fatalf("client 101 Sec-WebSocket-Extensions = %q, want %q", ext, tc.want)
			}
			msgs, types, total := interopMessages()
			coderEchoAll(ctx, t, c, msgs, types)
			expectLog(t, gw, "reason", "normal", "compression", tc.want)
			checkWire(t, "client -> upstream", upTap, len(msgs), total)
			checkWire(t, "upstream -> client", clTap, len(msgs), total)
		})
	}
}

// coderWrite writes m in pieces of 64 KiB: coder/websocket sends a frame
// per write, so a large message goes out fragmented.
// coderEchoAll sends every message of msgs (types are gorilla's message
// types) on c, checks that each comes back the same, and closes c with 1000.
func coderEchoAll(ctx context.Context, t *testing.T, c *coder.Conn, msgs [][]byte, types []int) {
	t.Helper()
	for i, m := range msgs {
		typ := coder.MessageText
		if types[i] == websocket.BinaryMessage {
			typ = coder.MessageBinary
		}
		if err := coderWrite(ctx, c, typ, m); err != nil {
			t.Fatal(err)
		}
		if gt, p, err := c.Read(ctx); err != nil || gt != typ || !bytes.Equal(p, m) {
			t.Fatalf("echo %d: %v, %d bytes, %v", i, gt, len(p), err)
		}
	}
	if err := c.Close(coder.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func coderWrite(ctx context.Context, c *coder.Conn, typ coder.MessageType, m []byte) error {
	w, err := c.Writer(ctx, typ)
	if err != nil {
		return err
	}
	for rest := m; len(rest) > 0; {
		n := min(len(rest), 64<<10)
		if _, err := w.Write(rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return w.Close()
}

// newDeflateGorillaUpstream is an echo upstream served by gorilla/websocket
// with EnableCompression, behind a wire tap of what it reads.
func newDeflateGorillaUpstream(t testing.TB) (string, *wireTap) {
	t.Helper()
	upg := websocket.Upgrader{EnableCompression: true, CheckOrigin: func(*http.Request) bool { return true }}
	return serveTapped(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := upg.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetReadLimit(1 << 20)
		for {
			op, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(op, p); err != nil {
				return
			}
		}
	})
}

// newDeflateCoderUpstream is an echo upstream served by coder/websocket in
// mode (compressing every message), behind a wire tap.
func newDeflateCoderUpstream(t testing.TB, mode coder.CompressionMode) (string, *wireTap) {
	t.Helper()
	return serveTapped(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, &coder.AcceptOptions{CompressionMode: mode, CompressionThreshold: 1, InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		for {
			typ, p, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := coderWrite(ctx, c, typ, p); err != nil {
				return
			}
		}
	})
}

// serveTapped serves h on 127.0.0.1 behind a wire tap; it returns the ws:// URL.
func serveTapped(t testing.TB, h http.HandlerFunc) (string, *wireTap) {
	t.Helper()
	tap := &wireTap{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(tapListener{ln, tap}) }()
	t.Cleanup(func() { srv.Close() })
	return "ws://" + ln.Addr().String(), tap
}

// tapProxy forwards TCP connections to target and taps what target sends
// back: the frames a client that is not a Go program receives.
func tapProxy(t testing.TB, target string) (string, *wireTap) {
	t.Helper()
	tap := &wireTap{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			tu := tap.wrap(u)
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(tu, c)
				_ = u.(*net.TCPConn).CloseWrite()
			}()
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, tu)
				c.Close()
				u.Close()
			}()
		}
	}()
	return ln.Addr().String(), tap
}

// inflatedSeries is what the gateway's metrics say of route's compressed
// messages and their inflated bytes: [0] client to upstream, [1] back.
func inflatedSeries(t testing.TB, gw *testGateway, route string) (messages, bytes [2]float64) {
	t.Helper()
	s := series(t, gw)
	for i, dir := range []string{"client_to_upstream", "upstream_to_client"} {
		messages[i] = s[seriesKey("wsgate_compressed_messages_total", "route", route, "direction", dir)]
		bytes[i] = s[seriesKey("wsgate_inflated_bytes_total", "route", route, "direction", dir)]
	}
	return messages, bytes
}

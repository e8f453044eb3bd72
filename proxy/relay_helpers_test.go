package proxy

// Helpers of the relay's end-to-end tests (docs/relay.md, "Close
// translation"): raw peers that write every byte themselves, third-party
// peers (gorilla/websocket, coder/websocket), gateway configs with short
// timeouts, and the access log line of a session.

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wsgate/frame"
	"wsgate/handshake"
)

// relayIO bounds every read and write of the relay tests.
const relayIO = 5 * time.Second

// relayYAML builds a one-route config toward upstream with short timeouts.
// kv overrides keys: "server.KEY" goes under server:, any other key under
// defaults:.
func relayYAML(upstream string, kv ...string) string {
	server := map[string]string{
		"shutdown_grace": "3s",
		"close_spread":   "0s",
	}
	defaults := map[string]string{
		"close_timeout":     "300ms",
		"write_timeout":     "2s",
		"idle_timeout":      "1m",
		"ping_interval":     "0s",
		"pong_timeout":      "1s",
		"max_frame_bytes":   "64KiB",
		"max_message_bytes": "256KiB",
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := strings.CutPrefix(kv[i], "server."); ok {
			server[k] = kv[i+1]
		} else {
			defaults[kv[i]] = kv[i+1]
		}
	}
	var b strings.Builder
	emit := func(name string, m map[string]string) {
		b.WriteString(name + ":\n")
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s: %s\n", k, m[k])
		}
	}
	emit("server", server)
	emit("defaults", defaults)
	fmt.Fprintf(&b, "routes:\n  - name: relay\n    path: /\n    upstreams: [%q]\n", upstream)
	return b.String()
}

// ---- raw peers ----

// rawPeer is one end of a WebSocket connection driven byte by byte: a test
// client (its frames masked) or a test upstream (unmasked). Every read and
// write has a deadline.
type rawPeer struct {
	t      testing.TB
	conn   net.Conn
	br     *bufio.Reader
	client bool // we are the client: frames we write are masked
	key    [4]byte
	fixed  bool       // mask every frame with key (else a fresh random key)
	wmu    sync.Mutex // writes may come from two goroutines (e.g. pongs and data)
}

// rawFrame is a frame as it arrived, payload unmasked.
type rawFrame struct {
	frame.Header
	Payload []byte
}

func (f rawFrame) String() string {
	p := string(f.Payload)
	if len(p) > 40 {
		p = p[:40] + "..."
	}
	return fmt.Sprintf("{fin=%v rsv=%d op=%v masked=%v len=%d %q}", f.Fin, f.Rsv, f.Opcode, f.Masked, f.Length, p)
}

// dialRaw opens a WebSocket to the gateway by hand: a request written
// byte by byte, a 101 checked against RFC 6455 §4.1.
func dialRaw(t testing.TB, addr, path string) *rawPeer {
	t.Helper()
	p, err := dialRawErr(addr, path)
	if err != nil {
		t.Fatal(err)
	}
	p.t = t
	return p
}

func dialRawErr(addr, path string) (*rawPeer, error) {
	conn, err := net.DialTimeout("tcp", addr, relayIO)
	if err != nil {
		return nil, err
	}
	return upgradeRaw(conn, addr, path)
}

// upgradeRaw runs the opening handshake on conn (TCP or TLS) by hand.
func upgradeRaw(conn net.Conn, addr, path string) (*rawPeer, error) {
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	_ = conn.SetDeadline(time.Now().Add(relayIO))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != handshake.AcceptKey(key) {
		conn.Close()
		return nil, fmt.Errorf("handshake: %s accept %q", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	_ = conn.SetDeadline(time.Time{})
	return &rawPeer{conn: conn, br: br, client: true, key: frame.NewKey()}, nil
}

// write writes b whole.
func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	if err := p.writeErr(b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

func (p *rawPeer) writeErr(b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.conn.SetWriteDeadline(time.Now().Add(relayIO))
	_, err := p.conn.Write(b)
	return err
}

// header returns h masked as this peer masks (clients: masked).
func (p *rawPeer) header(fin bool, op frame.Opcode) frame.Header {
	h := frame.Header{Fin: fin, Opcode: op, Masked: p.client}
	if p.client {
		h.Key = p.key
		if !p.fixed {
			h.Key = frame.NewKey()
		}
	}
	return h
}

// send writes one frame, masked if we are the client.
func (p *rawPeer) send(fin bool, op frame.Opcode, payload []byte) {
	p.t.Helper()
	p.write(frame.AppendFrame(nil, p.header(fin, op), payload))
}

// sendClose writes a Close frame with code and reason.
func (p *rawPeer) sendClose(code frame.CloseCode, reason string) {
	p.t.Helper()
	p.send(true, frame.OpClose, closePayload(code, reason))
}

// closePayload builds a close payload without any check, so tests can
// send illegal codes.
func closePayload(code frame.CloseCode, reason string) []byte {
	return append([]byte{byte(code >> 8), byte(code)}, reason...)
}

// read reads one frame (no rule checked, any size up to 16 MiB).
func (p *rawPeer) read() (rawFrame, error) {
	_ = p.conn.SetReadDeadline(time.Now().Add(relayIO))
	h, err := frame.ReadHeader(p.br, frame.Rules{})
	if err != nil {
		return rawFrame{}, err
	}
	if h.Length > 16<<20 {
		return rawFrame{}, fmt.Errorf("frame of %d bytes", h.Length)
	}
	b := make([]byte, h.Length)
	if _, err := io.ReadFull(p.br, b); err != nil {
		return rawFrame{}, err
	}
	if h.Masked {
		frame.Mask(h.Key, 0, b)
	}
	return rawFrame{Header: h, Payload: b}, nil
}

// next reads one frame and fails the test on error.
func (p *rawPeer) next() rawFrame {
	p.t.Helper()
	f, err := p.read()
	if err != nil {
		p.t.Fatalf("read frame: %v", err)
	}
	return f
}

// readClose reads frames until a Close and returns its code and reason
// (1005 for an empty payload). Data frames before it are returned too.
func (p *rawPeer) readClose() (code int, reason string, before []rawFrame) {
	p.t.Helper()
	for {
		f, err := p.read()
		if err != nil {
			p.t.Fatalf("waiting for a Close frame: %v (frames before: %v)", err, before)
		}
		if f.Opcode != frame.OpClose {
			before = append(before, f)
			continue
		}
		if p.client == f.Masked {
			p.t.Errorf("Close frame masked=%v, want %v", f.Masked, !p.client)
		}
		if len(f.Payload) == 0 {
			return 1005, "", before
		}
		if len(f.Payload) < 2 {
			p.t.Fatalf("Close payload %x", f.Payload)
		}
		return int(f.Payload[0])<<8 | int(f.Payload[1]), string(f.Payload[2:]), before
	}
}

// expectClose reads until a Close and checks its code and reason.
func (p *rawPeer) expectClose(code int, reason string) {
	p.t.Helper()
	c, r, _ := p.readClose()
	if c != code || r != reason {
		p.t.Errorf("%s got Close(%d, %q), want Close(%d, %q)", p.role(), c, r, code, reason)
	}
}

func (p *rawPeer) role() string {
	if p.client {
		return "client"
	}
	return "upstream"
}

// expectEOF checks that the gateway ends the connection with a FIN (after
// whatever frames are still in flight), not a reset, within d; then it
// closes our end.
func (p *rawPeer) expectEOF(d time.Duration) {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	var buf [4096]byte
	for {
		_, err := p.br.Read(buf[:])
		if err == nil {
			continue
		}
		if err != io.EOF {
			p.t.Errorf("%s: want EOF from the gateway, got %v", p.role(), err)
		}
		p.conn.Close()
		return
	}
}

// expectGone checks that the gateway drops the TCP connection (EOF or
// reset) without sending a Close frame.
func (p *rawPeer) expectGone() {
	p.t.Helper()
	for {
		f, err := p.read()
		if err != nil {
			if isTimeout(err) {
				p.t.Errorf("%s: connection still open", p.role())
			}
			return
		}
		if f.Opcode == frame.OpClose {
			p.t.Errorf("%s: got a Close frame %v, want a dropped connection", p.role(), f)
			return
		}
	}
}

// expectDropped reads raw bytes until the gateway ends the connection (EOF
// or reset), failing if it is still open after relayIO.
func (p *rawPeer) expectDropped() {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(relayIO))
	var buf [32 << 10]byte
	for {
		if _, err := p.br.Read(buf[:]); err != nil {
			if isTimeout(err) {
				p.t.Errorf("%s: connection still open", p.role())
			}
			return
		}
	}
}

// reset closes the connection with a TCP RST (SO_LINGER 0).
func (p *rawPeer) reset() {
	if tc, ok := p.conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	p.conn.Close()
}

// rawUpstream is an upstream that answers every opening handshake by hand
// and gives the connection, as a rawPeer, to handle (on its own goroutine).
// Close (at test cleanup) waits for every handler.
type rawUpstream struct {
	URL    string
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	handle func(p *rawPeer)
}

func newRawUpstream(t testing.TB, handle func(p *rawPeer)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{URL: "ws://" + ln.Addr().String(), ln: ln, handle: handle, conns: map[net.Conn]struct{}{}}
	u.wg.Add(1)
	go u.serve(t)
	t.Cleanup(u.close)
	return u
}

func (u *rawUpstream) serve(t testing.TB) {
	defer u.wg.Done()
	for {
		conn, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns[conn] = struct{}{}
		u.mu.Unlock()
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer func() {
				u.mu.Lock()
				delete(u.conns, conn)
				u.mu.Unlock()
				conn.Close()
			}()
			br := bufio.NewReader(conn)
			if answerUpgrade(conn, br) {
				u.handle(&rawPeer{t: t, conn: conn, br: br})
			}
		}()
	}
}

// answerUpgrade reads an opening handshake from conn (through br) and
// answers it with a 101 by hand, within relayIO. It reports whether the
// connection is now a WebSocket.
func answerUpgrade(conn net.Conn, br *bufio.Reader) bool {
	_ = conn.SetDeadline(time.Now().Add(relayIO))
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	hs, rej := handshake.Check(req)
	if rej != nil {
		return false
	}
	if _, err := conn.Write(handshake.AppendResponse101(nil, hs.Key, "", nil)); err != nil {
		return false
	}
	_ = conn.SetDeadline(time.Time{})
	return true
}

func (u *rawUpstream) close() {
	u.ln.Close()
	u.mu.Lock()
	for c := range u.conns {
		_ = c.SetDeadline(time.Now())
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// rawUpstreamChan is a rawUpstream whose connections are handed to the test
// through a channel; the handler returns when the test says so (or at
// cleanup).
func rawUpstreamChan(t testing.TB) (*rawUpstream, <-chan *rawPeer) {
	ch := make(chan *rawPeer, 16)
	done := make(chan struct{})
	u := newRawUpstream(t, func(p *rawPeer) {
		ch <- p
		<-done
	})
	t.Cleanup(func() { close(done) }) // runs before u.close (LIFO)
	return u, ch
}

func recvPeer(t testing.TB, ch <-chan *rawPeer) *rawPeer {
	t.Helper()
	select {
	case p := <-ch:
		p.t = t
		return p
	case <-time.After(relayIO):
		t.Fatal("no upstream connection")
		return nil
	}
}

// ---- third-party upstream ----

// closeRecord is a Close frame a third-party peer received.
type closeRecord struct {
	Code int
	Text string
	Err  error // the read error, when it was not a Close
}

// gorillaUpstream is an upstream served by gorilla/websocket: it echoes
// every message and records the Close it receives (or the error that ended
// it) on Closes. onConn, if set, runs right after the upgrade instead of the
// echo loop's first step (e.g. to send a Close first).
type gorillaUpstream struct {
	URL    string
	Closes chan closeRecord
	srv    *http.Server
	wg     sync.WaitGroup
}

func newGorillaUpstream(t testing.TB, onConn func(c *websocket.Conn)) *gorillaUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &gorillaUpstream{URL: "ws://" + ln.Addr().String(), Closes: make(chan closeRecord, 64)}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.wg.Add(1)
		defer u.wg.Done()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		// Reply to a Close with its code and "reply:"+reason, so a test can
		// tell the relayed reply from an echo made up by the gateway.
		c.SetCloseHandler(func(code int, text string) error {
			msg := websocket.FormatCloseMessage(code, "reply:"+text)
			if code == websocket.CloseNoStatusReceived {
				msg = []byte{}
			}
			_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(relayIO))
			return nil
		})
		if onConn != nil {
			onConn(c)
		}
		for {
			_ = c.SetReadDeadline(time.Now().Add(relayIO))
			op, p, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					u.Closes <- closeRecord{Code: ce.Code, Text: ce.Text}
				} else {
					u.Closes <- closeRecord{Err: err}
				}
				return
			}
			_ = c.SetWriteDeadline(time.Now().Add(relayIO))
			if err := c.WriteMessage(op, p); err != nil {
				u.Closes <- closeRecord{Err: err}
				return
			}
		}
	})}
	go func() { _ = u.srv.Serve(ln) }()
	t.Cleanup(func() {
		u.srv.Close()
		u.wg.Wait()
	})
	return u
}

// expectClose waits for the upstream's recorded Close.
func (u *gorillaUpstream) expectClose(t testing.TB, code int, text string) {
	t.Helper()
	select {
	case r := <-u.Closes:
		if r.Err != nil || r.Code != code || r.Text != text {
			t.Errorf("upstream received %+v, want Close(%d, %q)", r, code, text)
		}
	case <-time.After(relayIO):
		t.Errorf("upstream received no Close within %v", relayIO)
	}
}

// ---- the access log ----

// sessionLog waits for the n-th (1-based) access log line of gw and returns
// it decoded.
func sessionLog(t testing.TB, gw *testGateway, n int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(relayIO)
	for {
		lines := gw.Logs.Lines(`"event":"session"`)
		if len(lines) >= n {
			var m map[string]any
			if err := json.Unmarshal([]byte(lines[n-1]), &m); err != nil {
				t.Fatalf("access log %q: %v", lines[n-1], err)
			}
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access log line %d; logs:\n%s", n, gw.Logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectLog checks fields of the first access log line; values are compared
// as their string form.
func expectLog(t testing.TB, gw *testGateway, kv ...string) map[string]any {
	t.Helper()
	m := sessionLog(t, gw, 1)
	for i := 0; i+1 < len(kv); i += 2 {
		got := fmt.Sprint(m[kv[i]])
		if got != kv[i+1] {
			t.Errorf("access log %s = %q, want %q (line %v)", kv[i], got, kv[i+1], m)
		}
	}
	return m
}

// itoa is strconv.Itoa for close codes.
func itoa[T ~int | ~uint16](v T) string { return strconv.Itoa(int(v)) }

// Package wstest is the WebSocket test client the gateway's tests share: a
// Peer drives one end of a connection byte by byte (a client, its frames
// masked, or an upstream, unmasked), so tests can send exactly the frames
// they mean, malformed ones included, and read exactly what the gateway
// sent. Every read and write has a deadline (IO). Handshake runs an opening
// handshake from a chosen local address and reports its outcome. It is a
// test helper: nothing in the gateway imports it.
package wstest

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"wsgate/frame"
	"wsgate/handshake"
)

// IO bounds every read and write of a Peer.
const IO = 5 * time.Second

// Peer is one end of a WebSocket connection driven byte by byte: a test
// client (its frames masked) or a test upstream (unmasked). Every read and
// write has a deadline.
type Peer struct {
	T      testing.TB
	Conn   net.Conn
	BR     *bufio.Reader
	Client bool // we are the client: frames we write are masked
	Key    [4]byte
	Fixed  bool       // mask every frame with key (else a fresh random key)
	Rsv    uint8      // RSV bits Read accepts (an extension the test negotiated)
	wmu    sync.Mutex // writes may come from two goroutines (e.g. pongs and data)
}

// Frame is a frame as it arrived, payload unmasked.
type Frame struct {
	frame.Header
	Payload []byte
}

func (f Frame) String() string {
	p := string(f.Payload)
	if len(p) > 40 {
		p = p[:40] + "..."
	}
	return fmt.Sprintf("{fin=%v rsv=%d op=%v masked=%v len=%d %q}", f.Fin, f.Rsv, f.Opcode, f.Masked, f.Length, p)
}

// DialRaw opens a WebSocket to the gateway by hand: a request written
// byte by byte, a 101 checked against RFC 6455 §4.1.
func DialRaw(t testing.TB, addr, path string) *Peer {
	t.Helper()
	p, err := DialRawErr(addr, path)
	if err != nil {
		t.Fatal(err)
	}
	p.T = t
	return p
}

func DialRawErr(addr, path string) (*Peer, error) {
	conn, err := net.DialTimeout("tcp", addr, IO)
	if err != nil {
		return nil, err
	}
	return UpgradeRaw(conn, addr, path)
}

// UpgradeRaw runs the opening handshake on conn (TCP or TLS) by hand.
func UpgradeRaw(conn net.Conn, addr, path string) (*Peer, error) {
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	_ = conn.SetDeadline(time.Now().Add(IO))
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
	return &Peer{Conn: conn, BR: br, Client: true, Key: frame.NewKey()}, nil
}

// Write writes b whole.
func (p *Peer) Write(b []byte) {
	p.T.Helper()
	if err := p.WriteErr(b); err != nil {
		p.T.Fatalf("write: %v", err)
	}
}

func (p *Peer) WriteErr(b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.Conn.SetWriteDeadline(time.Now().Add(IO))
	_, err := p.Conn.Write(b)
	return err
}

// Header returns h masked as this peer masks (clients: masked).
func (p *Peer) Header(fin bool, op frame.Opcode) frame.Header {
	h := frame.Header{Fin: fin, Opcode: op, Masked: p.Client}
	if p.Client {
		h.Key = p.Key
		if !p.Fixed {
			h.Key = frame.NewKey()
		}
	}
	return h
}

// Send writes one frame, masked if we are the client.
func (p *Peer) Send(fin bool, op frame.Opcode, payload []byte) {
	p.T.Helper()
	p.Write(frame.AppendFrame(nil, p.Header(fin, op), payload))
}

// SendClose writes a Close frame with code and reason.
func (p *Peer) SendClose(code frame.CloseCode, reason string) {
	p.T.Helper()
	p.Send(true, frame.OpClose, ClosePayload(code, reason))
}

// ClosePayload builds a close payload without any check, so tests can
// send illegal codes.
func ClosePayload(code frame.CloseCode, reason string) []byte {
	return append([]byte{byte(code >> 8), byte(code)}, reason...)
}

// Read reads one frame (no rule checked, any size up to 16 MiB).
func (p *Peer) Read() (Frame, error) {
	_ = p.Conn.SetReadDeadline(time.Now().Add(IO))
	h, err := frame.ReadHeader(p.BR, frame.Rules{AllowRsv: p.Rsv})
	if err != nil {
		return Frame{}, err
	}
	if h.Length > 16<<20 {
		return Frame{}, fmt.Errorf("frame of %d bytes", h.Length)
	}
	b := make([]byte, h.Length)
	if _, err := io.ReadFull(p.BR, b); err != nil {
		return Frame{}, err
	}
	if h.Masked {
		frame.Mask(h.Key, 0, b)
	}
	return Frame{Header: h, Payload: b}, nil
}

// Next reads one frame and fails the test on error.
func (p *Peer) Next() Frame {
	p.T.Helper()
	f, err := p.Read()
	if err != nil {
		p.T.Fatalf("read frame: %v", err)
	}
	return f
}

// ReadClose reads frames until a Close and returns its code and reason
// (1005 for an empty payload). Data frames before it are returned too.
func (p *Peer) ReadClose() (code int, reason string, before []Frame) {
	p.T.Helper()
	for {
		f, err := p.Read()
		if err != nil {
			p.T.Fatalf("waiting for a Close frame: %v (frames before: %v)", err, before)
		}
		if f.Opcode != frame.OpClose {
			before = append(before, f)
			continue
		}
		if p.Client == f.Masked {
			p.T.Errorf("Close frame masked=%v, want %v", f.Masked, !p.Client)
		}
		if len(f.Payload) == 0 {
			return 1005, "", before
		}
		if len(f.Payload) < 2 {
			p.T.Fatalf("Close payload %x", f.Payload)
		}
		return int(f.Payload[0])<<8 | int(f.Payload[1]), string(f.Payload[2:]), before
	}
}

// ExpectClose reads until a Close and checks its code and reason.
func (p *Peer) ExpectClose(code int, reason string) {
	p.T.Helper()
	c, r, _ := p.ReadClose()
	if c != code || r != reason {
		p.T.Errorf("%s got Close(%d, %q), want Close(%d, %q)", p.Role(), c, r, code, reason)
	}
}

func (p *Peer) Role() string {
	if p.Client {
		return "client"
	}
	return "upstream"
}

// ExpectEOF checks that the gateway ends the connection with a FIN (after
// whatever frames are still in flight), not a reset, within d; then it
// closes our end.
func (p *Peer) ExpectEOF(d time.Duration) {
	p.T.Helper()
	_ = p.Conn.SetReadDeadline(time.Now().Add(d))
	var buf [4096]byte
	for {
		_, err := p.BR.Read(buf[:])
		if err == nil {
			continue
		}
		if err != io.EOF {
			p.T.Errorf("%s: want EOF from the gateway, got %v", p.Role(), err)
		}
		p.Conn.Close()
		return
	}
}

// ExpectGone checks that the gateway drops the TCP connection (EOF or
// reset) without sending a Close frame.
func (p *Peer) ExpectGone() {
	p.T.Helper()
	for {
		f, err := p.Read()
		if err != nil {
			if isTimeout(err) {
				p.T.Errorf("%s: connection still open", p.Role())
			}
			return
		}
		if f.Opcode == frame.OpClose {
			p.T.Errorf("%s: got a Close frame %v, want a dropped connection", p.Role(), f)
			return
		}
	}
}

// ExpectDropped reads raw bytes until the gateway ends the connection (EOF
// or reset), failing if it is still open after IO.
func (p *Peer) ExpectDropped() {
	p.T.Helper()
	_ = p.Conn.SetReadDeadline(time.Now().Add(IO))
	var buf [32 << 10]byte
	for {
		if _, err := p.BR.Read(buf[:]); err != nil {
			if isTimeout(err) {
				p.T.Errorf("%s: connection still open", p.Role())
			}
			return
		}
	}
}

// Reset closes the connection with a TCP RST (SO_LINGER 0).
func (p *Peer) Reset() {
	if tc, ok := p.Conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	p.Conn.Close()
}

// DialFrom opens a TCP connection to addr from the local IP local ("" = any).
func DialFrom(local, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: IO}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	return d.Dial("tcp", addr)
}

// Attempt is the outcome of an opening handshake: a peer on 101, else the
// response and its body.
type Attempt struct {
	Peer *Peer
	Resp *http.Response
	Body string
}

// Handshake opens a WebSocket to the gateway at addr from local, writing
// pre (e.g. a PROXY header) before the request; extra are header lines. A
// connection the gateway closes without answering is an error.
func Handshake(t testing.TB, addr, local string, pre []byte, extra ...string) (Attempt, error) {
	t.Helper()
	conn, err := DialFrom(local, addr)
	if err != nil {
		return Attempt{}, err
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	_ = conn.SetDeadline(time.Now().Add(IO))
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	req += "\r\n"
	if _, err := conn.Write(append(append([]byte(nil), pre...), req...)); err != nil {
		conn.Close()
		return Attempt{}, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return Attempt{}, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		return Attempt{Resp: resp, Body: string(b)}, nil
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != handshake.AcceptKey(key) {
		conn.Close()
		return Attempt{}, fmt.Errorf("bad accept %q", resp.Header.Get("Sec-WebSocket-Accept"))
	}
	_ = conn.SetDeadline(time.Time{})
	p := &Peer{T: t, Conn: conn, BR: br, Client: true, Key: frame.NewKey()}
	t.Cleanup(func() { conn.Close() })
	return Attempt{Peer: p, Resp: resp}, nil
}

// MustHandshake is wsHandshake that fails the test on a transport error.
func MustHandshake(t testing.TB, addr, local string, pre []byte, extra ...string) Attempt {
	t.Helper()
	a, err := Handshake(t, addr, local, pre, extra...)
	if err != nil {
		t.Fatalf("handshake from %q: %v", local, err)
	}
	return a
}

// Status is the handshake's HTTP Status.
func (a Attempt) Status() int {
	if a.Peer != nil {
		return http.StatusSwitchingProtocols
	}
	return a.Resp.StatusCode
}

// ExpectStatus checks a handshake's status (and, for a rejection, that the
// body names a reason).
func ExpectStatus(t testing.TB, a Attempt, want int, what string) {
	t.Helper()
	if got := a.Status(); got != want {
		t.Fatalf("%s: status %d (%q), want %d", what, got, a.Body, want)
	}
	if want != http.StatusSwitchingProtocols && strings.TrimSpace(a.Body) == "" {
		t.Errorf("%s: %d without a reason in the body", what, want)
	}
}

// EchoOnce sends a text message and expects it back.
func (p *Peer) EchoOnce(msg string) {
	p.T.Helper()
	p.Send(true, frame.OpText, []byte(msg))
	for {
		f := p.Next()
		if f.Opcode == frame.OpPing || f.Opcode == frame.OpPong {
			continue
		}
		if f.Opcode != frame.OpText || string(f.Payload) != msg {
			p.T.Fatalf("echo: got %v, want %q", f, msg)
		}
		return
	}
}

// EchoCheck sends a text message through a raw client and expects it back
// from the echoing upstream: the session is up and relaying.
func (p *Peer) EchoCheck(msg string) {
	p.T.Helper()
	p.Send(true, frame.OpText, []byte(msg))
	f := p.Next()
	if f.Opcode != frame.OpText || string(f.Payload) != msg || f.Masked {
		p.T.Fatalf("echo: got %v, want unmasked text %q", f, msg)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

package interop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"wsgate/frame"
)

const (
	// ioTimeout is the deadline put on every read and write, so a peer that
	// stops talking fails the test instead of hanging it.
	ioTimeout = 10 * time.Second
	// maxPayload caps frames and messages on our side; the largest test
	// message is 1 MiB.
	maxPayload = 2 << 20
	// readChunk is the piece size in which payloads are read, unmasked and
	// validated. It is odd and not a multiple of the 10-byte text cycle, so
	// code points and mask positions straddle read boundaries (RFC 6455
	// §5.3 masking by position, §5.6 UTF-8 across chunks).
	readChunk = 1021
	// maskChunk is the piece size in which our client masks what it sends,
	// so Mask's position carry is used on the write side too.
	maskChunk = 777
)

// sizes are the payload lengths every pairing exchanges: the boundaries of
// the 7-bit, 16-bit and 64-bit length encodings of RFC 6455 §5.2, and 1 MiB.
var sizes = []int{0, 125, 126, 65535, 65536, 1 << 20}

// endpoint is one end of a WebSocket connection driven by package frame
// alone: the per-direction loop the gateway runs, without the relay.
type endpoint struct {
	conn   net.Conn
	br     *bufio.Reader // from handshake.Upgrade or Upstream.Reader: may hold early frames
	client bool          // we are the client: mask everything we send (§5.3)
	rules  frame.Rules
	msg    frame.Message
	wbuf   []byte

	closeSent bool
	keys      map[[4]byte]int // masking keys used, client only
	sent      int             // frames sent
	pings     []string        // pings received (and answered) by readMessage
	pongs     []string        // pongs received by readMessage
}

func newEndpoint(conn net.Conn, br *bufio.Reader, client bool) *endpoint {
	sender := frame.FromClient // §5.1: a server MUST fail an unmasked frame
	if client {
		sender = frame.FromServer // §5.1: a client MUST fail a masked frame
	}
	return &endpoint{
		conn:   conn,
		br:     br,
		client: client,
		rules:  frame.Rules{Sender: sender, MaxPayload: maxPayload},
		msg:    frame.Message{MaxSize: maxPayload},
		keys:   make(map[[4]byte]int),
	}
}

// writeFrame sends one frame in a single write. A client masks it with a
// fresh key from frame.NewKey (RFC 6455 §5.3: "a new masking key for each
// frame"), in maskChunk pieces; p itself is left alone.
func (e *endpoint) writeFrame(fin bool, op frame.Opcode, p []byte) error {
	h := frame.Header{Fin: fin, Opcode: op, Length: int64(len(p))}
	if e.client {
		h.Masked, h.Key = true, frame.NewKey()
		e.keys[h.Key]++
	}
	var hb [frame.MaxHeaderSize]byte
	n := frame.PutHeader(hb[:], h)
	buf := append(append(e.wbuf[:0], hb[:n]...), p...)
	if h.Masked {
		pos := 0
		for b := buf[n:]; len(b) > 0; b = b[min(len(b), maskChunk):] {
			pos = frame.Mask(h.Key, pos, b[:min(len(b), maskChunk)])
		}
	}
	e.wbuf = buf
	if op == frame.OpClose {
		e.closeSent = true
	}
	e.sent++
	if err := e.conn.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	_, err := e.conn.Write(buf)
	return err
}

// writeClose sends a Close with code and reason (RFC 6455 §5.5.1).
func (e *endpoint) writeClose(code frame.CloseCode, reason string) error {
	return e.writeFrame(true, frame.OpClose, frame.AppendClose(nil, code, reason))
}

// readFrame reads one frame the way the relay does: header checks
// (§5.2, §5.5, the masking rule of §5.1), fragmentation order (§5.4), then
// the payload in readChunk pieces, each unmasked at its position (§5.3) and
// fed to the message's streaming UTF-8 check (§5.6, §8.1).
func (e *endpoint) readFrame() (frame.Header, []byte, error) {
	if err := e.conn.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		return frame.Header{}, nil, err
	}
	h, err := frame.ReadHeader(e.br, e.rules)
	if err != nil {
		return h, nil, err
	}
	if err := e.msg.Next(h); err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	pos := 0
	for b := p; len(b) > 0; b = b[min(len(b), readChunk):] {
		chunk := b[:min(len(b), readChunk)]
		if _, err := io.ReadFull(e.br, chunk); err != nil {
			return h, nil, err
		}
		if h.Masked {
			pos = frame.Mask(h.Key, pos, chunk)
		}
		if err := e.msg.Payload(chunk); err != nil {
			return h, nil, err
		}
	}
	return h, p, e.msg.EndFrame()
}

// fail is _Fail the WebSocket Connection_ (RFC 6455 §7.1.7): a Close with
// the code the violation implies, then the TCP connection is closed.
func (e *endpoint) fail(err error) {
	if code, ok := frame.CodeOf(err); ok && !e.closeSent {
		_ = e.writeClose(code, err.Error())
	}
	_ = e.conn.Close()
}

// closeReceived is what readMessage returns when the peer's Close arrives.
type closeReceived struct {
	code   frame.CloseCode
	reason string
}

func (c *closeReceived) Error() string { return fmt.Sprintf("close %d %q", c.code, c.reason) }

// message is one data message as read: its opcode, its payload and the
// payload length of each of its frames.
type message struct {
	op     frame.Opcode
	data   []byte
	frames []int
}

// readMessage reads frames until a whole data message has arrived. It
// answers each ping with a pong carrying the same payload (§5.5.2, §5.5.3),
// also between the fragments of a message (§5.4), and records pings and
// pongs. A Close comes back as a *closeReceived error.
func (e *endpoint) readMessage() (message, error) {
	var m message
	for {
		h, p, err := e.readFrame()
		if err != nil {
			return m, err
		}
		switch h.Opcode {
		case frame.OpPing:
			e.pings = append(e.pings, string(p))
			if !e.closeSent {
				if err := e.writeFrame(true, frame.OpPong, p); err != nil {
					return m, err
				}
			}
		case frame.OpPong:
			e.pongs = append(e.pongs, string(p))
		case frame.OpClose:
			code, reason, err := frame.ParseClose(p)
			if err != nil {
				return m, err
			}
			return m, &closeReceived{code, string(reason)}
		default:
			if h.Opcode != frame.OpContinuation {
				m.op = h.Opcode
			}
			m.data = append(m.data, p...)
			m.frames = append(m.frames, len(p))
			if h.Fin {
				return m, nil
			}
		}
	}
}

// closeHandshake starts the closing handshake (RFC 6455 §7.1.2): it sends
// a Close and reads until the peer's Close, discarding data (§5.5.1: the
// peer may still be sending), and returns the peer's code and reason.
func (e *endpoint) closeHandshake(code frame.CloseCode, reason string) (*closeReceived, error) {
	if err := e.writeClose(code, reason); err != nil {
		return nil, err
	}
	for {
		_, err := e.readMessage()
		var c *closeReceived
		if errors.As(err, &c) {
			return c, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// awaitEOF waits for the server to close the TCP connection, which it does
// first once both Closes have crossed (RFC 6455 §7.1.1); nothing may arrive
// before that.
func (e *endpoint) awaitEOF() error {
	if err := e.conn.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	b, err := e.br.ReadByte()
	if err == nil {
		return fmt.Errorf("byte %#x after the closing handshake", b)
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// freshKeys reports whether the client used a fresh masking key per frame.
// Keys are 32 random bits, so one chance collision over a few hundred
// frames is allowed (about 1 in 10^5); two would not be chance.
func (e *endpoint) freshKeys() error {
	if e.sent > 1 && len(e.keys) < e.sent-1 {
		return fmt.Errorf("%d distinct masking keys over %d frames", len(e.keys), e.sent)
	}
	return nil
}

// textPayload returns n bytes of valid UTF-8 cycling through code points of
// 1, 2, 3 and 4 bytes ("aé€😀", 10 bytes), padded with ASCII to exactly n.
// No frame or chunk size used here is a multiple of 10, so code points
// straddle frame and read boundaries.
func textPayload(n int) []byte {
	b := bytes.Repeat([]byte("aé€😀"), n/10+1)[:n]
	valid := b
	for !utf8.Valid(valid) {
		valid = valid[:len(valid)-1]
	}
	for i := len(valid); i < n; i++ {
		b[i] = 'x'
	}
	return b
}

// binaryPayload returns n pseudo-random bytes, including ones that are
// never valid UTF-8.
func binaryPayload(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func payload(op frame.Opcode, n int) []byte {
	if op == frame.OpText {
		return textPayload(n)
	}
	return binaryPayload(n)
}

// rec is one frame as a log line, so expected traffic reads as a list of
// strings: "text 1001", "cont 0 fin", `ping "x"`, `close 1000 "bye"`.
type rec struct {
	op  frame.Opcode
	fin bool
	n   int
	p   string // control frames only
}

func recOf(fin bool, op frame.Opcode, p []byte) rec {
	r := rec{op: op, fin: fin, n: len(p)}
	if op.IsControl() {
		r.p = string(p)
	}
	return r
}

func (r rec) String() string {
	switch r.op {
	case frame.OpText, frame.OpBinary, frame.OpContinuation:
		name := r.op.String()
		if r.op == frame.OpContinuation {
			name = "cont"
		}
		if r.fin {
			return fmt.Sprintf("%s %d fin", name, r.n)
		}
		return fmt.Sprintf("%s %d", name, r.n)
	case frame.OpClose:
		code, reason, err := frame.ParseClose([]byte(r.p))
		if err != nil {
			return fmt.Sprintf("close %q (%v)", r.p, err)
		}
		return fmt.Sprintf("close %d %q", code, reason)
	}
	return fmt.Sprintf("%s %q", r.op, r.p)
}

func lines(rs []rec) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// dataFrames lists the frames a message of n bytes is sent in when each
// frame holds at most per bytes and the last one carries FIN.
func dataFrames(op frame.Opcode, n, per int) []string {
	var out []string
	for first := true; first || n > 0; first = false {
		k := min(n, per)
		n -= k
		out = append(out, rec{op: op, fin: n == 0, n: k}.String())
		op = frame.OpContinuation
	}
	return out
}

// framesOf lists the frames of a message sent as the given fragment lengths.
func framesOf(op frame.Opcode, lens ...int) []string {
	out := make([]string, len(lens))
	for i, n := range lens {
		out[i] = rec{op: op, fin: i == len(lens)-1, n: n}.String()
		op = frame.OpContinuation
	}
	return out
}

func ctl(op frame.Opcode, p string) string { return recOf(true, op, []byte(p)).String() }

func closeLine(code frame.CloseCode, reason string) string {
	return ctl(frame.OpClose, string(frame.AppendClose(nil, code, reason)))
}

// sameLines fails t with the first difference between got and want.
func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("%s: line %d is %q, want %q\n got (%d lines): %s\nwant (%d lines): %s",
				what, i, g, w, len(got), clip(got, i), len(want), clip(want, i))
			return
		}
	}
}

// clip shows a few lines around line i of a long list.
func clip(l []string, i int) string {
	lo, hi := max(0, i-3), min(len(l), i+4)
	s := strings.Join(l[lo:hi], " | ")
	if lo > 0 {
		s = "… | " + s
	}
	if hi < len(l) {
		s += " | …"
	}
	return s
}

// closeCases are the Closes exchanged in both directions (RFC 6455
// §5.5.1, §7.1.2, §7.4): codes with reasons, an empty Close (whose code
// reads as 1005, §7.1.5), and the longest reason a 125-byte control
// payload allows, multi-byte.
var closeCases = []struct {
	code   frame.CloseCode
	reason string
}{
	{4000, "done"},
	{1000, "bye"},
	{frame.CloseNoStatus, ""},
	{4999, strings.Repeat("é", 61) + "!"}, // 123 bytes
}

func closeName(code frame.CloseCode, reason string) string {
	return fmt.Sprintf("%d/%dB", code, len(reason))
}

// fragmentPlan is a data message our side sends in fragments of the given
// lengths (RFC 6455 §5.4), with a ping after some of them.
type fragmentPlan struct {
	name  string
	op    frame.Opcode
	lens  []int
	pings map[int]string // ping payload sent after fragment i
}

// seventeen splits n bytes into 17 fragments: every fourth one, starting
// with the second, is empty, and so is the last; the others are odd sizes.
func seventeen(n int) []int {
	lens := make([]int, 17)
	full := []int{0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15} // 12 non-empty
	for i, j := range full {
		lens[j] = n / len(full)
		if i == len(full)-1 {
			lens[j] = n - (len(full)-1)*(n/len(full))
		}
	}
	return lens
}

var fragmentPlans = []fragmentPlan{
	// Cut at byte 7, inside the 4-byte 😀, with an empty fragment between
	// the halves of the code point.
	{name: "text in 3 fragments, empty middle", op: frame.OpText, lens: []int{7, 0, 993}},
	{name: "binary in 3 fragments, empty first and last", op: frame.OpBinary, lens: []int{0, 65536, 0}},
	{name: "text in 17 fragments", op: frame.OpText, lens: seventeen(70001)},
	{name: "binary in 17 fragments", op: frame.OpBinary, lens: seventeen(4099)},
	// §5.4: "An endpoint MUST be capable of handling control frames in the
	// middle of a fragmented message."
	{name: "text in 3 fragments, ping between", op: frame.OpText, lens: []int{5, 3, 2}, pings: map[int]string{0: "between"}},
	{
		name: "text in 17 fragments, pings between", op: frame.OpText, lens: seventeen(31013),
		pings: map[int]string{0: "", 1: "after an empty fragment", 8: strings.Repeat("p", frame.MaxControlPayload)},
	},
}

// send writes plan's fragments with its pings in between and returns the
// whole payload and the pings in order.
func (e *endpoint) send(plan fragmentPlan) (p []byte, pings []string, err error) {
	total := 0
	for _, n := range plan.lens {
		total += n
	}
	p = payload(plan.op, total)
	op, off := plan.op, 0
	for i, n := range plan.lens {
		if err := e.writeFrame(i == len(plan.lens)-1, op, p[off:off+n]); err != nil {
			return nil, nil, err
		}
		op, off = frame.OpContinuation, off+n
		if ping, ok := plan.pings[i]; ok {
			if err := e.writeFrame(true, frame.OpPing, []byte(ping)); err != nil {
				return nil, nil, err
			}
			pings = append(pings, ping)
		}
	}
	return p, pings, nil
}

package frame_test

import (
	"encoding/binary"
	"fmt"
	"testing"
	"unicode/utf8"

	"wsgate/frame"
)

// step is one frame through Message: Next(header), Payload for each chunk,
// EndFrame. The case stops at the first expected error.
type step struct {
	op     frame.Opcode
	fin    bool
	chunks []string
	length int64 // declared length when no chunks are fed; else their total

	next, payload, end error
	payloadAt          int // chunk index where payload is expected
}

func data(op frame.Opcode, fin bool, chunks ...string) step {
	return step{op: op, fin: fin, chunks: chunks}
}

func sized(op frame.Opcode, fin bool, length int64) step {
	return step{op: op, fin: fin, length: length}
}

func (s step) failNext(err error) step { s.next = err; return s }
func (s step) failEnd(err error) step  { s.end = err; return s }
func (s step) failPayload(at int, err error) step {
	s.payload, s.payloadAt = err, at
	return s
}

const (
	cont = frame.OpContinuation
	text = frame.OpText
	bin  = frame.OpBinary
	ping = frame.OpPing
	pong = frame.OpPong
	cls  = frame.OpClose
)

var messageCases = []struct {
	name    string
	maxSize int64
	steps   []step
}{
	{"§5.4 single text frame", 0, []step{data(text, true, "Hello")}},
	{"§5.4 §5.7 fragmented text", 0, []step{data(text, false, "Hel"), data(cont, true, "lo")}},
	{"§5.4 three fragments and a second message", 0, []step{
		data(bin, false, "a"), data(cont, false, "b"), data(cont, true, "c"), data(text, true, "d")}},
	{"§5.4 empty frames", 0, []step{data(text, false), data(cont, false), data(cont, true)}},
	{"§5.4 continuation first", 0, []step{
		data(cont, true, "x").failNext(frame.ErrContinuationNoStart)}},
	{"§5.4 continuation after a finished message", 0, []step{
		data(text, true, "a"), data(cont, true, "b").failNext(frame.ErrContinuationNoStart)}},
	{"§5.4 text inside fragmented text", 0, []step{
		data(text, false, "a"), data(text, true, "b").failNext(frame.ErrExpectedContinuation)}},
	{"§5.4 binary inside fragmented text", 0, []step{
		data(text, false, "a"), data(bin, true, "b").failNext(frame.ErrExpectedContinuation)}},
	{"§5.4 text inside fragmented binary", 0, []step{
		data(bin, false, "a"), data(cont, false, "b"), data(text, false, "c").failNext(frame.ErrExpectedContinuation)}},
	{"§5.4 control frames between fragments", 0, []step{
		data(text, false, "Hel"), data(ping, true, "p"), data(pong, true), data(cls, true, "\x03\xe8"),
		data(cont, true, "lo")}},
	{"§5.4 control frames before any message", 0, []step{
		data(ping, true, "\xff"), data(cont, true).failNext(frame.ErrContinuationNoStart)}},
	// A ping's payload is not part of the text message: bytes that would
	// complete or break the pending code point must not be fed to it.
	{"§5.4 ping inside a split code point", 0, []step{
		data(text, false, "\xe2"), data(ping, true, "\xff\x82"), data(cont, true, "\x82\xac")}},

	{"§10.4 single frame at MaxSize", 10, []step{sized(bin, true, 10)}},
	{"§10.4 single frame over MaxSize", 10, []step{sized(bin, true, 11).failNext(frame.ErrMessageTooBig)}},
	{"§10.4 fragments sum to MaxSize", 10, []step{sized(text, false, 4), sized(cont, false, 0), sized(cont, true, 6)}},
	{"§10.4 fragments one over MaxSize", 10, []step{
		sized(text, false, 4), sized(cont, false, 6), sized(cont, true, 1).failNext(frame.ErrMessageTooBig)}},
	{"§10.4 control frames do not count", 10, []step{
		sized(bin, false, 10), data(ping, true, "12345"), sized(cont, true, 0)}},
	{"§10.4 each message has its own budget", 10, []step{
		sized(bin, true, 10), sized(bin, false, 5), sized(cont, true, 5), sized(text, true, 10)}},
	{"§10.4 huge first frame", 100, []step{sized(bin, false, 1<<63-1).failNext(frame.ErrMessageTooBig)}},
	// 50 + (2^63-1) wraps to a negative int64 if added before comparing.
	{"§10.4 huge fragment after a small one", 100, []step{
		sized(bin, false, 50), sized(cont, true, 1<<63-1).failNext(frame.ErrMessageTooBig)}},
	{"§10.4 MaxSize 2^63-1 reached exactly", 1<<63 - 1, []step{
		sized(bin, false, 1<<62), sized(cont, false, 1<<62-1), sized(cont, true, 0)}},
	{"§10.4 MaxSize 2^63-1 then one more", 1<<63 - 1, []step{
		sized(bin, false, 1<<63-1), sized(cont, true, 1).failNext(frame.ErrMessageTooBig)}},
	{"§10.4 no cap", 0, []step{sized(bin, false, 1<<63-1), sized(cont, false, 1<<63-1), sized(cont, true, 1<<63-1)}},

	{"§8.1 κόσμε split inside code points across frames", 0, []step{
		data(text, false, "\xce", "\xba\xe1"), data(cont, false, "\xbd"), data(cont, true, "\xb9\xcf\x83\xce\xbc\xce\xb5")}},
	{"§8.1 surrogate split across frames", 0, []step{
		data(text, false, "ok\xed"), data(cont, true, "\xa0\x80").failPayload(0, frame.ErrInvalidUTF8)}},
	{"§8.1 bad byte fails before the frame ends", 0, []step{
		data(text, false, "ok", "\xff", "more").failPayload(1, frame.ErrInvalidUTF8)}},
	{"§8.1 overlong fails at its second byte", 0, []step{
		data(text, true, "\xe0", "\x80", "\x80").failPayload(1, frame.ErrInvalidUTF8)}},
	{"§8.1 message ends inside a code point", 0, []step{
		data(text, false, "a\xe2"), data(cont, true, "\x82").failEnd(frame.ErrInvalidUTF8)}},
	{"§8.1 single frame ends inside a code point", 0, []step{
		data(text, true, "\xe2\x82").failEnd(frame.ErrInvalidUTF8)}},
	{"§8.1 non-final frame may end inside a code point", 0, []step{
		data(text, false, "\xf0\x9f"), data(cont, false, "\x98"), data(cont, true, "\x80")}},
	{"§8.1 ends inside a code point after an empty final frame", 0, []step{
		data(text, false, "\xf0\x9f"), data(cont, true).failEnd(frame.ErrInvalidUTF8)}},
	{"§8.1 next text message starts clean", 0, []step{
		data(text, true, "\xce\xba"), data(text, true, "\xce\xb5")}},
	{"§5.6 binary is never checked", 0, []step{
		data(bin, true, "\xff\xfe"), data(bin, false, "\xed"), data(cont, true, "\xa0\x80", "\xc0")}},
}

func TestMessage(t *testing.T) {
	t.Parallel()
	for _, c := range messageCases {
		t.Run(c.name, func(t *testing.T) {
			m := frame.Message{MaxSize: c.maxSize}
			for i, s := range c.steps {
				h := frame.Header{Fin: s.fin, Opcode: s.op, Length: s.length}
				for _, p := range s.chunks {
					h.Length += int64(len(p))
				}
				if err := m.Next(h); err != s.next {
					t.Fatalf("frame %d %v: Next = %v, want %v", i, s.op, err, s.next)
				} else if err != nil {
					checkCode(t, err)
					return
				}
				for j, p := range s.chunks {
					want := error(nil)
					if s.payload != nil && j == s.payloadAt {
						want = s.payload
					}
					if err := m.Payload([]byte(p)); err != want {
						t.Fatalf("frame %d chunk %d %q: Payload = %v, want %v", i, j, p, err, want)
					} else if err != nil {
						checkCode(t, err)
						return
					}
				}
				if s.payload != nil {
					t.Fatalf("frame %d: expected payload error never came", i)
				}
				if err := m.EndFrame(); err != s.end {
					t.Fatalf("frame %d: EndFrame = %v, want %v", i, err, s.end)
				} else if err != nil {
					checkCode(t, err)
					return
				}
			}
		})
	}
}

// §5.4: a control frame between fragments leaves the message as it was.
func TestMessageInterleavedState(t *testing.T) {
	t.Parallel()
	m := frame.Message{MaxSize: 100}
	if m.InMessage() {
		t.Fatal("zero Message is in a message")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.Next(frame.Header{Opcode: frame.OpText, Length: 40}))
	if !m.InMessage() || m.Opcode() != frame.OpText {
		t.Fatalf("after first fragment: InMessage %v, Opcode %v", m.InMessage(), m.Opcode())
	}
	for _, op := range []frame.Opcode{frame.OpPing, frame.OpPong, frame.OpClose} {
		must(m.Next(frame.Header{Fin: true, Opcode: op, Length: 125}))
		must(m.Payload([]byte("\xff")))
		must(m.EndFrame())
		if !m.InMessage() || m.Opcode() != frame.OpText {
			t.Fatalf("after %v: InMessage %v, Opcode %v", op, m.InMessage(), m.Opcode())
		}
	}
	// The control frames' 375 bytes did not count toward MaxSize.
	must(m.Next(frame.Header{Fin: true, Opcode: frame.OpContinuation, Length: 60}))
	if m.InMessage() || m.Opcode() != frame.OpText {
		t.Fatalf("after last fragment: InMessage %v, Opcode %v", m.InMessage(), m.Opcode())
	}
	must(m.Next(frame.Header{Opcode: frame.OpBinary, Length: 1}))
	m.Reset()
	if m.InMessage() || m.MaxSize != 100 {
		t.Errorf("after Reset: InMessage %v, MaxSize %d", m.InMessage(), m.MaxSize)
	}
	if err := m.Next(frame.Header{Fin: true, Opcode: frame.OpContinuation}); err != frame.ErrContinuationNoStart {
		t.Errorf("continuation after Reset: %v", err)
	}
}

// refMessage is a model of Message written from RFC 6455 §5.4, §5.6 and
// §8.1 without its shortcuts: it keeps the whole text so far, decodes it
// rune by rune with unicode/utf8 and looks the unfinished rest up in the
// brute-force table of partial runes; at the end it asks utf8.Valid. It sums
// sizes in uint64, where two int64 lengths cannot overflow.
type refMessage struct {
	max     int64
	in      bool // a fragmented message is in progress
	op      frame.Opcode
	size    uint64
	text    []byte
	whole   int // text[:whole] is whole runes
	curData bool
	curFin  bool
}

func (r *refMessage) next(h frame.Header) error {
	r.curData = h.Opcode == cont || h.Opcode == text || h.Opcode == bin
	if !r.curData {
		return nil
	}
	if h.Opcode == cont && !r.in {
		return frame.ErrContinuationNoStart
	}
	if h.Opcode != cont {
		if r.in {
			return frame.ErrExpectedContinuation
		}
		r.op, r.size, r.text, r.whole = h.Opcode, 0, r.text[:0], 0
	}
	if r.max > 0 && r.size+uint64(h.Length) > uint64(r.max) {
		return frame.ErrMessageTooBig
	}
	r.size += uint64(h.Length)
	r.in, r.curFin = !h.Fin, h.Fin
	return nil
}

func (r *refMessage) payload(p []byte) error {
	if r.curData && r.op == text {
		r.text = append(r.text, p...)
		for r.whole < len(r.text) {
			c, size := utf8.DecodeRune(r.text[r.whole:])
			if c == utf8.RuneError && size == 1 {
				break // invalid, or a rune not finished yet
			}
			r.whole += size
		}
		if rest := r.text[r.whole:]; len(rest) > 0 && !partialRunes()[string(rest)] {
			return frame.ErrInvalidUTF8
		}
	}
	return nil
}

func (r *refMessage) endFrame() error {
	if r.curData && r.curFin && r.op == text && !utf8.Valid(r.text) {
		return frame.ErrInvalidUTF8
	}
	return nil
}

var fuzzOpcodes = []frame.Opcode{cont, text, bin, cls, ping, pong}

// FuzzMessage drives Message with frames decoded from ops, two bytes each:
//
//	flags:  F ccc oooo  FIN, chunk size-1, opcode index (mod 6)
//	length: H lllllll   H=1: an 8-byte declared length follows and no
//	                    payload is fed; H=0: l payload bytes follow
func FuzzMessage(f *testing.F) {
	f.Add(int64(0), []byte{0x81, 5, 'H', 'e', 'l', 'l', 'o'})
	f.Add(int64(0), []byte{0x01, 3, 'H', 'e', 'l', 0x80, 2, 'l', 'o'})
	f.Add(int64(0), []byte{0x01, 1, 0xe2, 0x84, 2, 0xff, 0x82, 0x80, 2, 0x82, 0xac})
	f.Add(int64(0), []byte{0x01, 3, 0xed, 0xa0, 0x80})
	f.Add(int64(0), []byte{0x80, 0, 0x02, 0, 0x01, 0})
	f.Add(int64(10), []byte{0x02, 4, 1, 2, 3, 4, 0x80, 6, 1, 2, 3, 4, 5, 6, 0x82, 0})
	f.Add(int64(100), []byte{0x02, 50, 0x80, 0x80, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(int64(1<<63-1), []byte{0x02, 0x80, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 1, 0})
	f.Add(int64(-1), []byte{0x71, 11, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5})
	f.Fuzz(func(t *testing.T, maxSize int64, ops []byte) {
		m := frame.Message{MaxSize: maxSize}
		r := refMessage{max: maxSize}
		for i := 0; len(ops) >= 2; i++ {
			flags, lb := ops[0], ops[1]
			ops = ops[2:]
			h := frame.Header{Fin: flags&0x80 != 0, Opcode: fuzzOpcodes[int(flags&0x0f)%len(fuzzOpcodes)]}
			chunk := int(flags>>4&7) + 1
			var payload []byte
			if lb&0x80 != 0 {
				if len(ops) < 8 {
					return
				}
				h.Length = int64(binary.BigEndian.Uint64(ops) >> 1)
				ops = ops[8:]
			} else {
				n := min(int(lb), len(ops))
				payload, ops = ops[:n], ops[n:]
				h.Length = int64(n)
			}
			where := fmt.Sprintf("frame %d %+v", i, h)
			err, want := m.Next(h), r.next(h)
			if err != want {
				t.Fatalf("%s: Next = %v, model says %v", where, err, want)
			}
			if err != nil {
				return
			}
			if m.InMessage() != r.in {
				t.Fatalf("%s: InMessage = %v, model says %v", where, m.InMessage(), r.in)
			}
			if r.curData && m.Opcode() != r.op {
				t.Fatalf("%s: Opcode = %v, model says %v", where, m.Opcode(), r.op)
			}
			for len(payload) > 0 {
				p := payload[:min(chunk, len(payload))]
				payload = payload[len(p):]
				err, want := m.Payload(p), r.payload(p)
				if err != want {
					t.Fatalf("%s: Payload(% x) = %v, model says %v", where, p, err, want)
				}
				if err != nil {
					return
				}
			}
			err, want = m.EndFrame(), r.endFrame()
			if err != want {
				t.Fatalf("%s: EndFrame = %v, model says %v", where, err, want)
			}
			if err != nil {
				return
			}
		}
	})
}

// A reader that drains frames after sending its Close (§7.1.1) may go on
// through Message: each new data message starts with fresh UTF-8 state.
func TestMessageStartsCleanAfterError(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"\xe2\x82", "\xff"} {
		var m frame.Message
		_ = m.Next(frame.Header{Fin: true, Opcode: frame.OpText, Length: int64(len(bad))})
		err := m.Payload([]byte(bad))
		if err == nil {
			err = m.EndFrame()
		}
		if err != frame.ErrInvalidUTF8 {
			t.Fatalf("%q: error %v, want ErrInvalidUTF8", bad, err)
		}
		if err := m.Next(frame.Header{Fin: true, Opcode: frame.OpText, Length: 2}); err != nil {
			t.Fatal(err)
		}
		if err := m.Payload([]byte("ok")); err != nil {
			t.Errorf("after %q: Payload(ok) = %v", bad, err)
		}
		if err := m.EndFrame(); err != nil {
			t.Errorf("after %q: EndFrame = %v", bad, err)
		}
	}
}

package frame_test

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"wsgate/frame"
)

// A masked header with a 64-bit length: the longest, 14 bytes.
var benchHeader = bits("1000 0010  1111 1111  0x0000000000010000  0x37fa213d")

// repeatReader returns b over and over, so a bufio.Reader on it never ends.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

// The hot paths allocate nothing; CI fails here if that regresses, without
// running benchmarks.
func TestZeroAllocs(t *testing.T) {
	br := bufio.NewReader(&repeatReader{b: benchHeader})
	bad := bufio.NewReader(&repeatReader{b: bits("1000 0011  0000 0000")})
	var hb [frame.MaxHeaderSize]byte
	buf := make([]byte, 0, 256)
	payload := pattern(4096)
	mixed := []byte(strings.Repeat("κόσμε 😀 ", 100))
	var v frame.UTF8
	m := frame.Message{MaxSize: 1 << 20}
	h := frame.Header{Fin: true, Opcode: frame.OpBinary, Masked: true, Key: rfcKey, Length: 1 << 16}
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"DecodeHeader", func() { _, _, _ = frame.DecodeHeader(benchHeader, client) }},
		{"DecodeHeader error", func() { _, _, _ = frame.DecodeHeader(benchHeader, server) }},
		{"ReadHeader", func() { _, _ = frame.ReadHeader(br, client) }},
		{"ReadHeader error", func() { _, _ = frame.ReadHeader(bad, frame.Rules{}) }},
		{"PutHeader", func() { frame.PutHeader(hb[:], h) }},
		{"AppendHeader", func() { buf = frame.AppendHeader(buf[:0], h) }},
		{"AppendFrame", func() {
			buf = frame.AppendFrame(buf[:0], frame.Header{Fin: true, Opcode: frame.OpPing, Masked: true, Key: rfcKey}, payload[:125])
		}},
		{"Mask", func() { frame.Mask(rfcKey, 1, payload) }},
		{"Remask", func() { frame.Remask(rfcKey, [4]byte{1, 2, 3, 4}, 3, payload) }},
		{"UTF8", func() { v.Reset(); v.Write(mixed[:501]); v.Write(mixed[501:]) }},
		{"Message", func() {
			m.Reset()
			_ = m.Next(frame.Header{Opcode: frame.OpText, Length: 501})
			_ = m.Payload(mixed[:501])
			_ = m.EndFrame()
			_ = m.Next(frame.Header{Fin: true, Opcode: frame.OpContinuation, Length: int64(len(mixed) - 501)})
			_ = m.Payload(mixed[501:])
			_ = m.EndFrame()
		}},
		{"ParseClose", func() { _, _, _ = frame.ParseClose([]byte("\x03\xe8" + kosme)) }},
		{"ParseClose error", func() { _, _, _ = frame.ParseClose([]byte{0x03, 0xed}) }},
		{"AppendClose", func() { buf = frame.AppendClose(buf[:0], frame.CloseGoingAway, "shutting down") }},
		{"NewKey", func() { _ = frame.NewKey() }},
	} {
		if c.name == "NewKey" && raceEnabled {
			continue // sync.Pool drops Puts at random under -race
		}
		if n := testing.AllocsPerRun(200, c.f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", c.name, n)
		}
	}
}

func BenchmarkDecodeHeader(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchHeader)))
	for b.Loop() {
		if _, _, err := frame.DecodeHeader(benchHeader, client); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadHeader(b *testing.B) {
	br := bufio.NewReader(&repeatReader{b: benchHeader})
	b.ReportAllocs()
	b.SetBytes(int64(len(benchHeader)))
	for b.Loop() {
		if _, err := frame.ReadHeader(br, client); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutHeader(b *testing.B) {
	h, _, _ := frame.DecodeHeader(benchHeader, client)
	var buf [frame.MaxHeaderSize]byte
	b.ReportAllocs()
	b.SetBytes(int64(len(benchHeader)))
	for b.Loop() {
		frame.PutHeader(buf[:], h)
	}
}

var maskSizes = []struct {
	name string
	n    int
}{{"16B", 16}, {"125B", 125}, {"1KiB", 1 << 10}, {"16KiB", 16 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}}

// BenchmarkMask compares Mask (assembly on amd64) with the portable
// maskGeneric, size by size in the same run. Both are called directly, as
// callers do: through a func value, Mask would no longer be inlined.
func BenchmarkMask(b *testing.B) {
	for _, s := range maskSizes {
		p := pattern(s.n)
		b.Run(s.name+"/generic", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(s.n))
			for b.Loop() {
				frame.MaskGeneric(rfcKey, 1, p)
			}
		})
		b.Run(s.name+"/Mask", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(s.n))
			for b.Loop() {
				frame.Mask(rfcKey, 1, p)
			}
		})
	}
}

// BenchmarkMaskBytewise is the baseline BenchmarkMask is measured against.
func BenchmarkMaskBytewise(b *testing.B) {
	for _, s := range maskSizes {
		b.Run(s.name, func(b *testing.B) {
			p := pattern(s.n)
			b.ReportAllocs()
			b.SetBytes(int64(s.n))
			for b.Loop() {
				maskBytewise(rfcKey, 1, p)
			}
		})
	}
}

func BenchmarkRemask(b *testing.B) {
	b.Run("64KiB", func(b *testing.B) {
		p := pattern(64 << 10)
		b.ReportAllocs()
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			frame.Remask(rfcKey, [4]byte{1, 2, 3, 4}, 1, p)
		}
	})
}

// utf8Inputs are 64 KiB texts: pure ASCII, and a mix of 1- to 4-byte code
// points that 4 KiB chunk boundaries cut through.
func utf8Inputs() []struct {
	name string
	b    []byte
} {
	const size = 64 << 10
	fill := func(s string) []byte {
		b := []byte(strings.Repeat(s, size/len(s)+1))[:size]
		for !utf8.Valid(b) { // cut inside a code point: pad with ASCII
			i := len(b) - 1
			for !utf8.RuneStart(b[i]) {
				i--
			}
			b = append(b[:i], bytes.Repeat([]byte{'.'}, size-i)...)
		}
		return b
	}
	return []struct {
		name string
		b    []byte
	}{
		{"ascii", fill("The quick brown fox jumps over the lazy dog. 0123456789\n")},
		{"mixed", fill("Hello, κόσμε! Привет, мир. 你好，世界。 😀🚀 WebSocket ✓ façade\n")},
	}
}

func BenchmarkUTF8(b *testing.B) {
	for _, in := range utf8Inputs() {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.b)))
			for b.Loop() {
				var v frame.UTF8
				for p := in.b; len(p) > 0; {
					n := min(len(p), 4<<10)
					if !v.Write(p[:n]) {
						b.Fatal("invalid")
					}
					p = p[n:]
				}
				if !v.Complete() {
					b.Fatal("incomplete")
				}
			}
		})
	}
}

// BenchmarkUtf8Valid is the baseline: the standard library on the whole
// input at once.
func BenchmarkUtf8Valid(b *testing.B) {
	for _, in := range utf8Inputs() {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.b)))
			for b.Loop() {
				if !utf8.Valid(in.b) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

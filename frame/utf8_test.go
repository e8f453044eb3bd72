package frame_test

import (
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"wsgate/frame"
)

const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" // "κόσμε", Autobahn case 6.2

// utf8Cases: in is written whole to a fresh validator; valid is what Write
// and Valid report (valid UTF-8 or a prefix of it), complete what Complete
// reports. complete must equal utf8.Valid(in), which the test also checks.
var utf8Cases = []struct {
	name            string
	in              string
	valid, complete bool
}{
	{"empty", "", true, true},
	{"ascii", "Hello, world", true, true},
	{"NUL", "\x00", true, true},
	{"DEL", "\x7f", true, true},
	{"κόσμε", kosme, true, true},
	{"U+0080 first 2-byte", "\xc2\x80", true, true},
	{"U+07FF last 2-byte", "\xdf\xbf", true, true},
	{"U+0800 first 3-byte", "\xe0\xa0\x80", true, true},
	{"U+D7FF before surrogates", "\xed\x9f\xbf", true, true},
	{"U+E000 after surrogates", "\xee\x80\x80", true, true},
	{"U+FFFD", "\xef\xbf\xbd", true, true},
	{"U+FEFF BOM", "\xef\xbb\xbf", true, true},
	{"U+FFFF last 3-byte", "\xef\xbf\xbf", true, true},
	{"U+10000 first 4-byte", "\xf0\x90\x80\x80", true, true},
	{"U+10FFFF last", "\xf4\x8f\xbf\xbf", true, true},
	{"emoji", "I \xf0\x9f\x92\x96 WebSocket", true, true},
	{"mixed", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z", true, true},

	// Truncated at the end: a valid prefix, not a complete message.
	{"truncated 2-byte", "\xc2", true, false},
	{"truncated 3-byte after 1", "\xe2", true, false},
	{"truncated 3-byte after 2", "\xe2\x82", true, false},
	{"truncated 4-byte after 3", "\xf0\x9f\x98", true, false},
	{"κόσμε truncated", kosme[:len(kosme)-1], true, false},
	{"U+10FFFF truncated", "\xf4\x8f\xbf", true, false},

	// Overlong forms (§8.1 via RFC 3629 §3).
	{"overlong NUL 2-byte", "\xc0\x80", false, false},
	{"overlong / 2-byte", "\xc0\xaf", false, false},
	{"overlong U+007F 2-byte", "\xc1\xbf", false, false},
	{"overlong / 3-byte", "\xe0\x80\xaf", false, false},
	{"overlong U+07FF 3-byte", "\xe0\x9f\xbf", false, false},
	{"overlong / 4-byte", "\xf0\x80\x80\xaf", false, false},
	{"overlong U+FFFF 4-byte", "\xf0\x8f\xbf\xbf", false, false},
	// UTF-16 surrogates U+D800-U+DFFF.
	{"U+D800", "\xed\xa0\x80", false, false},
	{"U+DB7F", "\xed\xad\xbf", false, false},
	{"U+DC00", "\xed\xb0\x80", false, false},
	{"U+DFFF", "\xed\xbf\xbf", false, false},
	{"surrogate pair", "\xed\xa0\x80\xed\xb0\x80", false, false},
	// Above U+10FFFF.
	{"U+110000", "\xf4\x90\x80\x80", false, false},
	{"U+1FFFFF", "\xf7\xbf\xbf\xbf", false, false},
	{"5-byte form", "\xf8\x88\x80\x80\x80", false, false},
	{"6-byte form", "\xfc\x84\x80\x80\x80\x80", false, false},
	// Continuation bytes with no lead.
	{"lone continuation 0x80", "\x80", false, false},
	{"lone continuation 0xBF", "\xbf", false, false},
	{"continuation in ascii", "a\x80b", false, false},
	{"extra continuation", "\xc2\x80\x80", false, false},
	{"4 continuations", "\x80\x80\x80\x80", false, false},
	// Truncated sequences followed by something else.
	{"2-byte then ascii", "\xc2A", false, false},
	{"3-byte cut then ascii", "\xe2\x82A", false, false},
	{"4-byte cut then space", "\xf0\x9f\x98 ", false, false},
	{"3-byte cut then lead", "\xe2\x82\xe2\x82\xac", false, false},
	// Bytes that never appear in UTF-8.
	{"0xC0", "\xc0", false, false},
	{"0xC1", "\xc1", false, false},
	{"0xF5", "\xf5", false, false},
	{"0xF8", "\xf8", false, false},
	{"0xFE", "\xfe", false, false},
	{"0xFF", "\xff", false, false},
	// Autobahn 6.3/6.4: κόσμε with a bad code point in the middle.
	{"κόσμε + surrogate + edited", kosme + "\xed\xa0\x80edited", false, false},
	{"κόσμε + U+110000 + edited", kosme + "\xf4\x90\x80\x80edited", false, false},
	{"κόσμε with a code point cut", "\xce\xba\xe1\xbd\xcf\x83\xce\xbc\xce\xb5", false, false},
	{"κόσμε + 0xFF", kosme + "\xff", false, false},
}

// §5.6, §8.1: text must be valid UTF-8, decided over the whole message
// however it is chunked.
func TestUTF8Table(t *testing.T) {
	t.Parallel()
	for _, c := range utf8Cases {
		t.Run("§8.1 "+c.name, func(t *testing.T) {
			if c.complete != utf8.Valid([]byte(c.in)) {
				t.Fatalf("table row disagrees with utf8.Valid")
			}
			if c.valid != validPrefixRef([]byte(c.in)) {
				t.Fatalf("table row disagrees with validPrefixRef")
			}
			var v frame.UTF8
			if got := v.Write([]byte(c.in)); got != c.valid {
				t.Errorf("Write = %v, want %v", got, c.valid)
			}
			if v.Valid() != c.valid || v.Complete() != c.complete {
				t.Errorf("Valid, Complete = %v, %v; want %v, %v", v.Valid(), v.Complete(), c.valid, c.complete)
			}
			checkStreaming(t, []byte(c.in))
		})
	}
}

// §8.1: an endpoint fails the connection "when [it] finds that the byte
// stream is not [...] a valid UTF-8 stream", which it can tell as soon as
// the bytes so far cannot begin one. failAt is the index of the byte at
// which Write must first return false, -1 for never.
func TestUTF8FailsEarly(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in       string
		failAt   int
		complete bool
	}{
		{"\xed\xa0", 1, false}, // surrogate known at the second byte
		{"\xed\xbf", 1, false},
		{"\xf4\x90", 1, false}, // > U+10FFFF known at the second byte
		{"\xe0\x80", 1, false}, // overlong 3-byte known at the second byte
		{"\xe0\x9f", 1, false},
		{"\xf0\x80", 1, false}, // overlong 4-byte known at the second byte
		{"\xf0\x8f", 1, false},
		{"\xc0", 0, false}, // never a lead
		{"\xc1", 0, false},
		{"\xf5", 0, false},
		{"\xff", 0, false},
		{"\x80", 0, false},             // lone continuation
		{"ab\xe2\x82A", 4, false},      // cut sequence, then ASCII
		{"\xf0\x9f\x98\xc2", 3, false}, // cut 4-byte, then a lead
		{kosme + "\xed\xa0\x80edited", len(kosme) + 1, false},
		{"\xe2\x82", -1, false}, // "€" cut short: valid so far, not complete
		{"\xf4\x8f\xbf", -1, false},
		{"\xc2\x80\xc2", -1, false},
		{"\xe2\x82\xac", -1, true},
	} {
		in := []byte(c.in)
		// Byte by byte.
		var v frame.UTF8
		first := -1
		for i := range in {
			if !v.Write(in[i:i+1]) && first < 0 {
				first = i
			}
		}
		if first != c.failAt {
			t.Errorf("%q byte by byte: first false at %d, want %d", c.in, first, c.failAt)
		}
		if v.Complete() != c.complete {
			t.Errorf("%q: Complete() = %v, want %v", c.in, v.Complete(), c.complete)
		}
		// In one Write that stops right at the offending byte.
		if c.failAt >= 0 {
			var w frame.UTF8
			if w.Write(in[:c.failAt]) != true {
				t.Errorf("%q: Write of the %d bytes before the bad one = false", c.in, c.failAt)
			}
			var x frame.UTF8
			if x.Write(in[:c.failAt+1]) {
				t.Errorf("%q: Write(% x) = true, want false", c.in, in[:c.failAt+1])
			}
		}
	}
}

// After a failure the validator stays failed until Reset.
func TestUTF8Sticky(t *testing.T) {
	t.Parallel()
	var v frame.UTF8
	if v.Write([]byte("\xff")) {
		t.Fatal("0xFF accepted")
	}
	if v.Write([]byte("ok")) || v.Valid() || v.Complete() {
		t.Error("validator recovered without Reset")
	}
	v.Reset()
	if !v.Write([]byte("\xe2\x82")) || v.Complete() {
		t.Error("after Reset: want a valid, incomplete prefix")
	}
	v.Reset()
	if !v.Complete() || !v.Write([]byte("ok")) || !v.Complete() {
		t.Error("Reset did not drop the pending bytes")
	}
	var zero frame.UTF8
	if !zero.Complete() || !zero.Valid() {
		t.Error("zero value is not an empty valid message")
	}
}

// checkStreaming feeds b split at every position into two chunks, one byte
// at a time, and (when short) split at every pair of positions, checking
// each Write against the reference and the end against utf8.Valid.
func checkStreaming(t *testing.T, b []byte) {
	t.Helper()
	whole := utf8.Valid(b)
	prefixOK := make([]bool, len(b)+1) // prefixOK[i]: b[:i] is valid or a valid prefix
	for i := range prefixOK {
		prefixOK[i] = validPrefixRef(b[:i])
	}
	check := func(v *frame.UTF8, how string) {
		t.Helper()
		if v.Complete() != whole || v.Valid() != prefixOK[len(b)] {
			t.Fatalf("%q %s: Complete, Valid = %v, %v; want %v, %v", b, how, v.Complete(), v.Valid(), whole, prefixOK[len(b)])
		}
	}
	for i := 0; i <= len(b); i++ {
		var v frame.UTF8
		if got := v.Write(b[:i]); got != prefixOK[i] {
			t.Fatalf("%q split at %d: first Write = %v, want %v", b, i, got, prefixOK[i])
		}
		if got := v.Write(b[i:]); got != prefixOK[len(b)] {
			t.Fatalf("%q split at %d: second Write = %v, want %v", b, i, got, prefixOK[len(b)])
		}
		check(&v, "split in two")
	}
	var v frame.UTF8
	for i := range b {
		if got := v.Write(b[i : i+1]); got != prefixOK[i+1] {
			t.Fatalf("%q byte %d alone: Write = %v, want %v", b, i, got, prefixOK[i+1])
		}
	}
	check(&v, "byte by byte")
	if len(b) <= 24 {
		for i := 0; i <= len(b); i++ {
			for j := i; j <= len(b); j++ {
				var v frame.UTF8
				v.Write(b[:i])
				v.Write(b[i:j])
				if got := v.Write(b[j:]); got != prefixOK[len(b)] {
					t.Fatalf("%q split at %d,%d: Write = %v", b, i, j, got)
				}
				check(&v, "split in three")
			}
		}
	}
}

// Streaming equivalence over generated strings that mix ASCII, every
// encoding length and stray bytes.
func TestUTF8StreamingRandom(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	pieces := []string{"a", " ", "é", "€", "😀", "κόσμε", "\U0010FFFF", "\u0800", "\ufffd",
		"\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\x80", "\xff", "\xe2\x82", "\xf0\x9f"}
	for range 2000 {
		var sb strings.Builder
		clean := rng.IntN(2) == 0
		for range rng.IntN(12) {
			p := pieces[rng.IntN(len(pieces))]
			if clean && !utf8.ValidString(p) {
				continue
			}
			sb.WriteString(p)
		}
		checkStreaming(t, []byte(sb.String()))
	}
}

func FuzzUTF8(f *testing.F) {
	for _, c := range utf8Cases {
		f.Add([]byte(c.in))
	}
	f.Add([]byte(strings.Repeat("κόσμε 😀 ", 20)))
	f.Add([]byte(strings.Repeat("x", 40) + "\xed\xa0\x80"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			b = b[:4096] // the every-split checks are quadratic
		}
		whole := utf8.Valid(b)
		wholePrefix := validPrefixRef(b)
		for i := 0; i <= len(b); i++ {
			var v frame.UTF8
			if got := v.Write(b[:i]); got != validPrefixRef(b[:i]) {
				t.Fatalf("split at %d: first Write = %v", i, got)
			}
			if got := v.Write(b[i:]); got != wholePrefix {
				t.Fatalf("split at %d: second Write = %v, want %v", i, got, wholePrefix)
			}
			if v.Complete() != whole || v.Valid() != wholePrefix {
				t.Fatalf("split at %d: Complete, Valid = %v, %v; utf8.Valid = %v", i, v.Complete(), v.Valid(), whole)
			}
		}
		// Chunk patterns drawn from a generator seeded by the input.
		h := fnv.New64a()
		h.Write(b)
		rng := rand.New(rand.NewPCG(h.Sum64(), uint64(len(b))))
		for _, maxChunk := range []int{1, 2, 3, 5, 17, 64} {
			var v frame.UTF8
			for rest := b; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(maxChunk))
				v.Write(rest[:n])
				rest = rest[n:]
			}
			if v.Complete() != whole || v.Valid() != wholePrefix {
				t.Fatalf("chunks up to %d: Complete, Valid = %v, %v; utf8.Valid = %v", maxChunk, v.Complete(), v.Valid(), whole)
			}
		}
	})
}

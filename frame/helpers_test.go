package frame_test

import (
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"wsgate/frame"
)

// bits parses a frame written the way RFC 6455 §5.2 draws it: groups of 0s
// and 1s, most significant bit first, spaced for readability, and
// 0x-prefixed hex for the multi-byte fields (extended length, masking key,
// payload). Bit groups must add up to whole bytes before a hex token. It
// panics on a malformed string: the strings are test tables, not input.
func bits(s string) []byte {
	out := []byte{}
	var acc byte
	n := 0
	for _, tok := range strings.Fields(s) {
		if hx, ok := strings.CutPrefix(tok, "0x"); ok {
			if n != 0 {
				panic(fmt.Sprintf("bits %q: hex token %q after %d loose bits", s, tok, n))
			}
			b, err := hex.DecodeString(hx)
			if err != nil {
				panic(fmt.Sprintf("bits %q: %v", s, err))
			}
			out = append(out, b...)
			continue
		}
		for _, c := range tok {
			if c != '0' && c != '1' {
				panic(fmt.Sprintf("bits %q: bad character %q", s, c))
			}
			acc = acc<<1 | byte(c-'0')
			if n++; n == 8 {
				out = append(out, acc)
				acc, n = 0, 0
			}
		}
	}
	if n != 0 {
		panic(fmt.Sprintf("bits %q: %d bits left over", s, n))
	}
	return out
}

func TestBitsHelper(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want []byte
	}{
		{"", []byte{}},
		{"1000 0001 1000 0101", []byte{0x81, 0x85}},
		{"10000001 0x37fa213d", []byte{0x81, 0x37, 0xfa, 0x21, 0x3d}},
		{"0x81 0x05 0x48", []byte{0x81, 0x05, 0x48}},
		{"1 0 0 0 1 0 0 0  0111 1110 0x00 0x7e", []byte{0x88, 0x7e, 0x00, 0x7e}},
	} {
		if got := bits(c.in); string(got) != string(c.want) {
			t.Errorf("bits(%q) = % x, want % x", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"1000", "0x1", "1000 0x00 1000", "1002 0000", "0xzz"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("bits(%q) did not panic", bad)
				}
			}()
			bits(bad)
		}()
	}
}

// wantCode is the close code each violation must carry, written out here
// rather than read from the package: 1002 for protocol errors, 1007 for bad
// payload data, 1009 for size limits (RFC 6455 §7.4.1).
var wantCode = map[error]frame.CloseCode{
	frame.ErrReservedOpcode:       1002,
	frame.ErrReservedBits:         1002,
	frame.ErrControlFragmented:    1002,
	frame.ErrControlTooLong:       1002,
	frame.ErrNonMinimalLength:     1002,
	frame.ErrLengthTopBit:         1002,
	frame.ErrUnmasked:             1002,
	frame.ErrMasked:               1002,
	frame.ErrFrameTooBig:          1009,
	frame.ErrMessageTooBig:        1009,
	frame.ErrInvalidUTF8:          1007,
	frame.ErrContinuationNoStart:  1002,
	frame.ErrExpectedContinuation: 1002,
	frame.ErrCloseOneByte:         1002,
	frame.ErrCloseCodeIllegal:     1002,
	frame.ErrCloseReasonUTF8:      1007,
}

// checkCode fails t unless err carries the close code wantCode lists for it.
func checkCode(t *testing.T, err error) {
	t.Helper()
	want, ok := wantCode[err]
	if !ok {
		t.Fatalf("error %v is not a known violation", err)
	}
	got, ok := frame.CodeOf(err)
	if !ok || got != want {
		t.Errorf("CodeOf(%v) = %d, %v; want %d", err, got, ok, want)
	}
}

// maskBytewise is the reference for frame.Mask: RFC 6455 §5.3 read
// literally, "octet i of the transformed data is the XOR of octet i of the
// original data with octet at index i modulo 4 of the masking key", with i
// counted from the start of the payload.
func maskBytewise(key [4]byte, pos int, b []byte) int {
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
	return (pos + len(b)) & 3
}

// partialRunes holds every proper prefix (1-3 bytes) of the UTF-8 encoding
// of every Unicode scalar value, built by brute force so that the reference
// below shares no logic with the validator under test.
var partialRunes = sync.OnceValue(func() map[string]bool {
	m := make(map[string]bool)
	var buf [utf8.UTFMax]byte
	// Runes r and r+1 differ only in the last byte when r&63 != 63, and
	// the last byte is never in a proper prefix: one rune per 64-aligned
	// block (the surrogate range is one too) yields every prefix.
	for r := rune(0x80); r <= utf8.MaxRune; r += 64 {
		if r >= 0xD800 && r <= 0xDFFF {
			continue // surrogates are not scalar values
		}
		n := utf8.EncodeRune(buf[:], r)
		for i := 1; i < n; i++ {
			m[string(buf[:i])] = true
		}
	}
	return m
})

// validPrefixRef reports whether b is valid UTF-8 or a prefix of valid
// UTF-8: whole code points followed by at most a proper prefix of one.
func validPrefixRef(b []byte) bool {
	for k := 0; k <= 3 && k <= len(b); k++ {
		if utf8.Valid(b[:len(b)-k]) && (k == 0 || partialRunes()[string(b[len(b)-k:])]) {
			return true
		}
	}
	return false
}

func TestValidPrefixRef(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"", true}, {"a", true}, {"\xE2", true}, {"\xE2\x82", true}, {"\xE2\x82\xAC", true},
		{"\xF0\x9F\x98", true}, {"\xED\x9F", true}, {"\xF4\x8F\xBF", true},
		{"\xED\xA0", false}, {"\xF4\x90", false}, {"\xE0\x80", false}, {"\xF0\x80", false},
		{"\xC0", false}, {"\xC1", false}, {"\xF5", false}, {"\x80", false}, {"\xE2\x82a", false},
	} {
		if got := validPrefixRef([]byte(c.in)); got != c.want {
			t.Errorf("validPrefixRef(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

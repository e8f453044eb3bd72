package frame

import "unicode/utf8"

// UTF8 validates a text message that arrives in chunks of any size: a code
// point may be split across chunks and across frames (RFC 6455 §5.6, §8.1).
// It fails as soon as the bytes seen so far cannot start valid UTF-8 (an
// overlong lead, a surrogate, a value above U+10FFFF are rejected at the byte
// that makes them so), and Complete tells at the end of the message whether it
// stopped inside a code point. The zero value is ready for a new message.
//
// Whole runs are checked with unicode/utf8.Valid, which has an ASCII fast
// path; only a code point straddling a chunk boundary is handled byte by byte.
type UTF8 struct {
	pend [4]byte // bytes of an incomplete code point carried to the next chunk
	n    uint8   // len of pend in use (0-3)
	bad  bool
}

// Reset prepares v for a new message.
func (v *UTF8) Reset() { *v = UTF8{} }

// Complete reports whether everything written so far is valid UTF-8 that does
// not end inside a code point.
func (v *UTF8) Complete() bool { return !v.bad && v.n == 0 }

// Valid reports whether everything written so far is valid UTF-8 or a prefix
// of valid UTF-8.
func (v *UTF8) Valid() bool { return !v.bad }

// Write feeds the next chunk and reports whether the stream so far is still
// valid (or a valid prefix). After it returns false it keeps returning false
// until Reset.
func (v *UTF8) Write(p []byte) bool {
	if v.bad {
		return false
	}
	// Finish a code point left open by the previous chunk.
	for v.n > 0 && len(p) > 0 {
		v.pend[v.n] = p[0]
		v.n++
		p = p[1:]
		if !validPrefix(v.pend[:v.n]) {
			v.bad = true
			return false
		}
		if int(v.n) == seqLen(v.pend[0]) {
			v.n = 0
		}
	}
	if len(p) == 0 {
		return true
	}
	// Split off a trailing incomplete code point: look back at most 3 bytes
	// for a lead byte whose sequence does not fit.
	body, tail := p, p[:0]
	for i := len(p) - 1; i >= 0 && i >= len(p)-3; i-- {
		c := p[i]
		if c < 0x80 || c >= 0xC0 { // not a continuation byte
			if l := seqLen(c); l > len(p)-i {
				body, tail = p[:i], p[i:]
			}
			break
		}
	}
	if !utf8.Valid(body) || !validPrefix(tail) {
		v.bad = true
		return false
	}
	v.n = uint8(copy(v.pend[:], tail))
	return true
}

// seqLen returns the length of the UTF-8 sequence that lead byte c starts, or
// 0 if c cannot start one (a continuation byte, 0xC0, 0xC1, 0xF5-0xFF).
func seqLen(c byte) int {
	switch {
	case c < 0x80:
		return 1
	case c < 0xC2:
		return 0
	case c < 0xE0:
		return 2
	case c < 0xF0:
		return 3
	case c < 0xF5:
		return 4
	}
	return 0
}

// validPrefix reports whether b (at most 4 bytes) is a prefix of a valid
// UTF-8 sequence, per the well-formed byte sequences table of Unicode §3.9.
func validPrefix(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	l := seqLen(b[0])
	if l == 0 || len(b) > l {
		return false
	}
	if len(b) >= 2 {
		lo, hi := byte(0x80), byte(0xBF)
		switch b[0] {
		case 0xE0:
			lo = 0xA0 // no overlong 3-byte forms
		case 0xED:
			hi = 0x9F // no UTF-16 surrogates
		case 0xF0:
			lo = 0x90 // no overlong 4-byte forms
		case 0xF4:
			hi = 0x8F // nothing above U+10FFFF
		}
		if b[1] < lo || b[1] > hi {
			return false
		}
	}
	for _, c := range b[min(len(b), 2):] {
		if c < 0x80 || c > 0xBF {
			return false
		}
	}
	return true
}

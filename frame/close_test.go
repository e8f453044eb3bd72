package frame_test

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"wsgate/frame"
)

// legalRanges are the close codes that may appear on the wire, written out
// from RFC 6455 §7.4.1 (1000-1003, 1007-1011), the IANA registry
// (1012-1014) and §7.4.2 (3000-3999 registered, 4000-4999 private use).
// Everything else is illegal: 0-999 unused, 1004 reserved, 1005/1006/1015
// never sent, 1016-2999 reserved, 5000+ undefined.
var legalRanges = [][2]int{{1000, 1003}, {1007, 1014}, {3000, 4999}}

func legalByRanges(c int) bool {
	for _, r := range legalRanges {
		if c >= r[0] && c <= r[1] {
			return true
		}
	}
	return false
}

// The golden table: every code 0-5000 and 65535, checked against the
// ranges above, through IsLegalOnWire, ParseClose and AppendClose.
func TestCloseCodeGolden(t *testing.T) {
	t.Parallel()
	codes := make([]int, 0, 5002)
	for c := 0; c <= 5000; c++ {
		codes = append(codes, c)
	}
	codes = append(codes, 65535)
	legal := 0
	for _, c := range codes {
		code := frame.CloseCode(c)
		want := legalByRanges(c)
		if want {
			legal++
		}
		if got := code.IsLegalOnWire(); got != want {
			t.Errorf("§7.4 CloseCode(%d).IsLegalOnWire() = %v, want %v", c, got, want)
		}
		p := []byte{byte(c >> 8), byte(c), 'o', 'k'}
		got, reason, err := frame.ParseClose(p)
		switch {
		case want && (err != nil || got != code || string(reason) != "ok"):
			t.Errorf("§5.5.1 ParseClose(code %d) = %d, %q, %v; want accepted", c, got, reason, err)
		case !want && err != frame.ErrCloseCodeIllegal:
			t.Errorf("§7.4 ParseClose(code %d) error = %v, want ErrCloseCodeIllegal", c, err)
		}
		out := frame.AppendClose(nil, code, "ok")
		switch {
		case c == 1005:
			if len(out) != 0 {
				t.Errorf("AppendClose(1005) = % x, want empty", out)
			}
		case want:
			if !bytes.Equal(out, p) {
				t.Errorf("AppendClose(%d) = % x, want % x", c, out, p)
			}
		default:
			if !bytes.Equal(out, []byte{0x03, 0xf3, 'o', 'k'}) {
				t.Errorf("AppendClose(illegal %d) = % x, want 1011", c, out)
			}
		}
	}
	if legal != 4+8+2000 {
		t.Errorf("%d legal codes, want 2012", legal)
	}
}

func TestCloseCodeSpotChecks(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		code  frame.CloseCode
		legal bool
	}{
		{0, false}, {999, false},
		{1000, true}, {1001, true}, {1002, true}, {1003, true},
		{1004, false}, // reserved
		{1005, false}, // CloseNoStatus: never on the wire
		{1006, false}, // CloseAbnormal: never on the wire
		{1007, true}, {1010, true}, {1011, true},
		{1012, true}, {1013, true}, {1014, true}, // IANA
		{1015, false}, // TLS handshake: never on the wire
		{1016, false}, {2000, false}, {2999, false},
		{3000, true}, {3999, true}, {4000, true}, {4999, true},
		{5000, false}, {65535, false},
	} {
		if got := c.code.IsLegalOnWire(); got != c.legal {
			t.Errorf("§7.4 %d.IsLegalOnWire() = %v, want %v", c.code, got, c.legal)
		}
	}
}

func TestParseClose(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 123)
	for _, c := range []struct {
		name   string
		in     string
		code   frame.CloseCode
		reason string
		err    error
	}{
		{"§5.5.1 empty payload", "", frame.CloseNoStatus, "", nil},
		{"§5.5.1 code only", "\x03\xe8", frame.CloseNormal, "", nil},
		{"§5.5.1 code and reason", "\x03\xe9bye", frame.CloseGoingAway, "bye", nil},
		{"§5.5.1 UTF-8 reason", "\x0f\xa0" + kosme, 4000, kosme, nil},
		{"§5.5 125 bytes", "\x03\xe8" + long, frame.CloseNormal, long, nil},
		{"§5.5.1 one byte", "\x03", 0, "", frame.ErrCloseOneByte},
		{"§7.4 1005 on the wire", "\x03\xed", 0, "", frame.ErrCloseCodeIllegal},
		{"§7.4 1006 on the wire", "\x03\xee", 0, "", frame.ErrCloseCodeIllegal},
		{"§7.4 code 0", "\x00\x00", 0, "", frame.ErrCloseCodeIllegal},
		{"§7.4 code 65535", "\xff\xff", 0, "", frame.ErrCloseCodeIllegal},
		{"§5.5.1 reason 0xFF", "\x03\xe8ok\xff", 0, "", frame.ErrCloseReasonUTF8},
		{"§5.5.1 reason surrogate", "\x03\xe8\xed\xa0\x80", 0, "", frame.ErrCloseReasonUTF8},
		{"§5.5.1 reason truncated", "\x03\xe8\xe2\x82", 0, "", frame.ErrCloseReasonUTF8},
		{"§5.5 126 bytes", "\x03\xe8" + long + "y", 0, "", frame.ErrControlTooLong},
		{"§5.5 200 bytes", strings.Repeat("\x03\xe8", 100), 0, "", frame.ErrControlTooLong},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, reason, err := frame.ParseClose([]byte(c.in))
			if err != c.err {
				t.Fatalf("ParseClose(%q) error = %v, want %v", c.in, err, c.err)
			}
			if err != nil {
				checkCode(t, err)
				return
			}
			if code != c.code || string(reason) != c.reason {
				t.Errorf("ParseClose(%q) = %d, %q; want %d, %q", c.in, code, reason, c.code, c.reason)
			}
		})
	}
	// The reason aliases the payload.
	p := []byte("\x03\xe8abc")
	_, reason, _ := frame.ParseClose(p)
	if &reason[0] != &p[2] {
		t.Error("reason does not alias the payload")
	}
}

func TestAppendCloseRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		code   frame.CloseCode
		reason string
	}{
		{frame.CloseNormal, ""},
		{frame.CloseGoingAway, "server shutting down"},
		{frame.CloseInvalidPayload, kosme},
		{frame.CloseBadGateway, "upstream 😀"},
		{3000, "x"},
		{4999, strings.Repeat("r", frame.MaxCloseReason)},
	} {
		p := frame.AppendClose([]byte("hdr"), c.code, c.reason)
		if string(p[:3]) != "hdr" {
			t.Fatalf("AppendClose overwrote dst: %q", p)
		}
		code, reason, err := frame.ParseClose(p[3:])
		if err != nil || code != c.code || string(reason) != c.reason {
			t.Errorf("ParseClose(AppendClose(%d, %q)) = %d, %q, %v", c.code, c.reason, code, reason, err)
		}
	}
	if p := frame.AppendClose([]byte("hdr"), frame.CloseNoStatus, "ignored"); string(p) != "hdr" {
		t.Errorf("§7.1.5 AppendClose(CloseNoStatus) = %q, want nothing appended", p)
	}
	for _, c := range []frame.CloseCode{0, 1004, 1006, 1015, 2999, 5000, 65535} {
		p := frame.AppendClose(nil, c, "why")
		if code, reason, err := frame.ParseClose(p); err != nil || code != frame.CloseInternalError || string(reason) != "why" {
			t.Errorf("AppendClose(illegal %d) parses as %d, %q, %v; want 1011", c, code, reason, err)
		}
	}
}

// §5.5: a control payload is at most 125 bytes, so a close reason at most
// 123; the cut must fall on a code point boundary (§5.5.1: the reason is
// UTF-8) and take as much of the reason as fits.
func TestAppendCloseTruncates(t *testing.T) {
	t.Parallel()
	for _, filler := range []string{"é", "€", "😀", "κόσμε"} {
		for lead := range 8 {
			r := strings.Repeat("a", 118+lead)
			for len(r) < 200 {
				r += filler
			}
			p := frame.AppendClose(nil, frame.CloseNormal, r)
			reason := p[2:]
			if len(p) > frame.MaxControlPayload || len(reason) > 123 {
				t.Fatalf("%d-byte payload for a %d-byte reason", len(p), len(r))
			}
			if !utf8.Valid(reason) || !strings.HasPrefix(r, string(reason)) {
				t.Fatalf("reason %q is not a valid prefix of the original", reason)
			}
			if _, size := utf8.DecodeRuneInString(r[len(reason):]); len(reason)+size <= 123 {
				t.Fatalf("cut at %d bytes; the next %d-byte rune still fits", len(reason), size)
			}
			if _, _, err := frame.ParseClose(p); err != nil {
				t.Fatalf("ParseClose(AppendClose(...)) = %v", err)
			}
		}
	}
	// 122 ASCII bytes then "€" across the boundary: 122 bytes survive.
	r := strings.Repeat("a", 122) + strings.Repeat("€", 26)
	if got := len(frame.AppendClose(nil, frame.CloseNormal, r)) - 2; got != 122 {
		t.Errorf("reason cut to %d bytes, want 122", got)
	}
	// A reason that is not UTF-8 is cut at the first bad byte.
	if p := frame.AppendClose(nil, frame.CloseNormal, "ok\xffmore"); string(p[2:]) != "ok" {
		t.Errorf("reason %q, want %q", p[2:], "ok")
	}
	// U+FFFD written out is a real character, not an error.
	if p := frame.AppendClose(nil, frame.CloseNormal, "\ufffd!"); string(p[2:]) != "\ufffd!" {
		t.Errorf("reason %q, want U+FFFD!", p[2:])
	}
}

func FuzzParseClose(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x03})
	f.Add([]byte{0x03, 0xe8})
	f.Add([]byte("\x03\xe9bye"))
	f.Add([]byte("\x03\xed"))
	f.Add([]byte("\x0b\xb8" + kosme))
	f.Add([]byte("\x03\xe8ok\xff"))
	f.Add([]byte("\x03\xe8\xed\xa0\x80"))
	f.Add([]byte("\x03\xe8" + strings.Repeat("é", 62)))
	f.Add([]byte("\x03\xe8" + strings.Repeat("x", 124)))
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		code, reason, err := frame.ParseClose(p)
		// The expected outcome, from §5.5, §5.5.1 and the ranges above.
		var want error
		switch {
		case len(p) == 0:
		case len(p) == 1:
			want = frame.ErrCloseOneByte
		case len(p) > 125:
			want = frame.ErrControlTooLong
		case !legalByRanges(int(p[0])<<8 | int(p[1])):
			want = frame.ErrCloseCodeIllegal
		case !utf8.Valid(p[2:]):
			want = frame.ErrCloseReasonUTF8
		}
		if err != want {
			t.Fatalf("ParseClose(% x) error = %v, want %v", p, err, want)
		}
		if err != nil {
			checkCode(t, err)
		} else {
			if len(p) == 0 {
				if code != frame.CloseNoStatus || len(reason) != 0 {
					t.Fatalf("empty payload: %d, %q", code, reason)
				}
			} else if !code.IsLegalOnWire() || !utf8.Valid(reason) {
				t.Fatalf("accepted code %d reason %q", code, reason)
			}
			if out := frame.AppendClose(nil, code, string(reason)); !bytes.Equal(out, p) {
				t.Fatalf("AppendClose(%d, %q) = % x, want % x", code, reason, out, p)
			}
		}

		// Whatever the input, AppendClose builds a payload that parses.
		if len(p) < 2 {
			return
		}
		c, r := frame.CloseCode(int(p[0])<<8|int(p[1])), string(p[2:])
		out := frame.AppendClose(nil, c, r)
		gc, gr, err := frame.ParseClose(out)
		if err != nil {
			t.Fatalf("ParseClose(AppendClose(%d, %q)) = %v", c, r, err)
		}
		switch {
		case c == frame.CloseNoStatus:
			if len(out) != 0 {
				t.Fatalf("AppendClose(1005) = % x", out)
			}
		case !legalByRanges(int(c)) && gc != frame.CloseInternalError,
			legalByRanges(int(c)) && gc != c:
			t.Fatalf("AppendClose(%d) sent code %d", c, gc)
		}
		if len(gr) > frame.MaxCloseReason || !strings.HasPrefix(r, string(gr)) {
			t.Fatalf("AppendClose reason %q from %q", gr, r)
		}
	})
}

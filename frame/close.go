package frame

import "unicode/utf8"

// MaxCloseReason is the longest reason that fits a close frame: 125 bytes of
// control payload less the 2-byte code (RFC 6455 §5.5, §5.5.1).
const MaxCloseReason = MaxControlPayload - 2

// ParseClose parses a Close frame's (unmasked) payload (RFC 6455 §5.5.1). An
// empty payload yields CloseNoStatus. A one-byte payload, a code that is not
// legal on the wire (§7.4), a reason that is not UTF-8, or a payload over 125
// bytes is an *Error. reason aliases p.
func ParseClose(p []byte) (code CloseCode, reason []byte, err error) {
	switch {
	case len(p) == 0:
		return CloseNoStatus, nil, nil
	case len(p) == 1:
		return 0, nil, ErrCloseOneByte
	case len(p) > MaxControlPayload:
		return 0, nil, ErrControlTooLong
	}
	code = CloseCode(uint16(p[0])<<8 | uint16(p[1]))
	if !code.IsLegalOnWire() {
		return code, nil, ErrCloseCodeIllegal
	}
	reason = p[2:]
	if !utf8.Valid(reason) {
		return code, nil, ErrCloseReasonUTF8
	}
	return code, reason, nil
}

// AppendClose appends a Close payload for code and reason to dst. Code
// CloseNoStatus yields an empty payload. The reason is cut to MaxCloseReason
// bytes on a code point boundary, and at the first byte that is not valid
// UTF-8, so the result always parses. A code that is not legal on the wire is the caller's
// bug; it is replaced by CloseInternalError rather than sent.
func AppendClose(dst []byte, code CloseCode, reason string) []byte {
	if code == CloseNoStatus {
		return dst
	}
	if !code.IsLegalOnWire() {
		code = CloseInternalError
	}
	dst = append(dst, byte(code>>8), byte(code))
	n := 0
	for n < len(reason) {
		r, size := utf8.DecodeRuneInString(reason[n:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		if n+size > MaxCloseReason {
			break
		}
		n += size
	}
	return append(dst, reason[:n]...)
}

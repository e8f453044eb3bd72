package frame

import (
	"bufio"
	"encoding/binary"
	"io"
)

// MaxHeaderSize is the largest possible frame header: 2 bytes, an 8-byte
// extended length and a 4-byte masking key (RFC 6455 §5.2).
const MaxHeaderSize = 14

// MaxControlPayload is the largest payload of a control frame (RFC 6455 §5.5).
const MaxControlPayload = 125

// RSV bits as they sit in Header.Rsv (and in the first header byte >> 4).
const (
	Rsv1 uint8 = 0x4
	Rsv2 uint8 = 0x2
	Rsv3 uint8 = 0x1
)

// Header is a decoded frame header (RFC 6455 §5.2).
type Header struct {
	Fin    bool
	Rsv    uint8 // RSV1-3 as Rsv1|Rsv2|Rsv3
	Opcode Opcode
	Masked bool
	Key    [4]byte // the masking key, when Masked
	Length int64   // payload length
}

// Size returns the number of bytes h occupies on the wire.
func (h *Header) Size() int {
	n := 2
	switch {
	case h.Length > 0xFFFF:
		n += 8
	case h.Length > 125:
		n += 2
	}
	if h.Masked {
		n += 4
	}
	return n
}

// Sender says which end of a connection sent a frame, which decides the
// masking rule of RFC 6455 §5.1.
type Sender uint8

const (
	// AnySender applies no masking rule.
	AnySender Sender = iota
	// FromClient frames must be masked (§5.1: a server MUST close the
	// connection on an unmasked frame).
	FromClient
	// FromServer frames must not be masked (§5.1: a client MUST close the
	// connection on a masked frame).
	FromServer
)

// Rules are the per-direction checks applied on top of the structural ones.
// The zero value applies only the structural checks and no RSV bit.
type Rules struct {
	Sender   Sender
	AllowRsv uint8 // RSV bits a negotiated extension defines (§5.2); 0 when none
	// MaxPayload caps a single frame's payload; 0 means no cap. A frame over
	// it fails with ErrFrameTooBig before any payload is read.
	MaxPayload int64
}

// DecodeHeader decodes the header at the start of b and checks it against
// RFC 6455 §5.2 and §5.5 and against r. It returns the header and its size on
// the wire. If b holds only part of a header it returns ErrShortHeader and
// n == 0. On a violation it returns an *Error naming it, together with the
// header and its size as decoded, so a caller that keeps reading after it has
// sent its Close (RFC 6455 §7.1.1) can step over the frame.
func DecodeHeader(b []byte, r Rules) (h Header, n int, err error) {
	if len(b) < 2 {
		return h, 0, ErrShortHeader
	}
	b0, b1 := b[0], b[1]
	h.Fin = b0&0x80 != 0
	h.Rsv = (b0 >> 4) & 0x7
	h.Opcode = Opcode(b0 & 0x0F)
	h.Masked = b1&0x80 != 0
	n = 2
	var lenErr error
	switch l := b1 & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return Header{}, 0, ErrShortHeader
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		n = 4
		if h.Length < 126 {
			lenErr = ErrNonMinimalLength
		}
	case 127:
		if len(b) < 10 {
			return Header{}, 0, ErrShortHeader
		}
		v := binary.BigEndian.Uint64(b[2:10])
		n = 10
		switch {
		case v>>63 != 0: // §5.2: "the most significant bit MUST be 0"
			lenErr = ErrLengthTopBit
			v &^= 1 << 63
		case v <= 0xFFFF:
			lenErr = ErrNonMinimalLength
		}
		h.Length = int64(v)
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return Header{}, 0, ErrShortHeader
		}
		copy(h.Key[:], b[n:n+4])
		n += 4
	}
	if lenErr != nil {
		return h, n, lenErr
	}
	return h, n, h.check(r)
}

func (h *Header) check(r Rules) error {
	if h.Opcode.IsReserved() {
		return ErrReservedOpcode
	}
	if h.Rsv&^r.AllowRsv != 0 {
		return ErrReservedBits
	}
	if h.Opcode.IsControl() {
		// §5.5: control frames have a payload of at most 125 bytes and
		// MUST NOT be fragmented.
		if !h.Fin {
			return ErrControlFragmented
		}
		if h.Length > MaxControlPayload {
			return ErrControlTooLong
		}
	}
	switch r.Sender {
	case FromClient:
		if !h.Masked {
			return ErrUnmasked
		}
	case FromServer:
		if h.Masked {
			return ErrMasked
		}
	}
	if r.MaxPayload > 0 && h.Length > r.MaxPayload {
		return ErrFrameTooBig
	}
	return nil
}

// ReadHeader reads and checks one frame header from br (see DecodeHeader). It
// returns io.EOF if br ended cleanly before the header, and
// io.ErrUnexpectedEOF if it ended inside it. A header that violates the rules
// is consumed and returned with the *Error. It does not allocate.
func ReadHeader(br *bufio.Reader, r Rules) (Header, error) {
	b, err := br.Peek(2)
	if len(b) < 2 {
		return Header{}, eofErr(err, len(b))
	}
	need := 2
	switch b[1] & 0x7F {
	case 126:
		need += 2
	case 127:
		need += 8
	}
	if b[1]&0x80 != 0 {
		need += 4
	}
	if need > 2 {
		if b, err = br.Peek(need); len(b) < need {
			return Header{}, eofErr(err, 1)
		}
	}
	h, n, err := DecodeHeader(b, r)
	_, _ = br.Discard(n)
	return h, err
}

func eofErr(err error, got int) error {
	if err == io.EOF && got > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}

// PutHeader encodes h into b, which must hold MaxHeaderSize bytes (or
// h.Size()), in the minimal length encoding, and returns the bytes written.
// It trusts h: the caller checks what it relays.
func PutHeader(b []byte, h Header) int {
	b0 := h.Rsv<<4 | uint8(h.Opcode)&0x0F
	if h.Fin {
		b0 |= 0x80
	}
	var mask byte
	if h.Masked {
		mask = 0x80
	}
	b[0] = b0
	n := 2
	switch {
	case h.Length > 0xFFFF:
		b[1] = mask | 127
		binary.BigEndian.PutUint64(b[2:10], uint64(h.Length))
		n = 10
	case h.Length > 125:
		b[1] = mask | 126
		binary.BigEndian.PutUint16(b[2:4], uint16(h.Length))
		n = 4
	default:
		b[1] = mask | byte(h.Length)
	}
	if h.Masked {
		copy(b[n:n+4], h.Key[:])
		n += 4
	}
	return n
}

// AppendHeader appends the encoding of h to dst.
func AppendHeader(dst []byte, h Header) []byte {
	var b [MaxHeaderSize]byte
	n := PutHeader(b[:], h)
	return append(dst, b[:n]...)
}

// AppendFrame appends a whole frame: h with Length set to len(payload), then
// payload, masked with h.Key when h.Masked. payload itself is not modified.
// It is meant for small frames the gateway builds itself (close, ping, pong).
func AppendFrame(dst []byte, h Header, payload []byte) []byte {
	h.Length = int64(len(payload))
	dst = AppendHeader(dst, h)
	start := len(dst)
	dst = append(dst, payload...)
	if h.Masked {
		Mask(h.Key, 0, dst[start:])
	}
	return dst
}

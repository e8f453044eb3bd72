package frame

import "errors"

// Error is a violation of RFC 6455 by the peer that sent the frame. Code is
// the close code that peer must receive (1002, 1007 or 1009).
//
// The package's errors are sentinel values, so errors.Is works and returning
// one allocates nothing.
type Error struct {
	Code CloseCode
	Msg  string
}

func (e *Error) Error() string { return "websocket: " + e.Msg }

// CodeOf returns the close code implied by err, if err is (or wraps) an *Error.
func CodeOf(err error) (CloseCode, bool) {
	if e, ok := err.(*Error); ok { // the common case, without errors.As's allocation
		return e.Code, true
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code, true
	}
	return 0, false
}

func protocolError(msg string) *Error { return &Error{Code: CloseProtocolError, Msg: msg} }

// Header violations (RFC 6455 §5.2, §5.5).
var (
	ErrReservedOpcode       = protocolError("reserved opcode")
	ErrReservedBits         = protocolError("RSV bit set without a negotiated extension")
	ErrControlFragmented    = protocolError("fragmented control frame")
	ErrControlTooLong       = protocolError("control frame payload over 125 bytes")
	ErrNonMinimalLength     = protocolError("payload length not in minimal encoding")
	ErrLengthTopBit         = protocolError("64-bit payload length with the most significant bit set")
	ErrUnmasked             = protocolError("unmasked frame from a client")
	ErrMasked               = protocolError("masked frame from a server")
	ErrFrameTooBig          = &Error{Code: CloseMessageTooBig, Msg: "frame payload over the size limit"}
	ErrMessageTooBig        = &Error{Code: CloseMessageTooBig, Msg: "message over the size limit"}
	ErrInvalidUTF8          = &Error{Code: CloseInvalidPayload, Msg: "text message is not valid UTF-8"}
	ErrContinuationNoStart  = protocolError("continuation frame without a message to continue")
	ErrExpectedContinuation = protocolError("new data frame inside a fragmented message")
	ErrRsv1NotFirst         = protocolError("RSV1 on a control frame or a continuation (RFC 7692 §6.1)")
	ErrBadDeflate           = &Error{Code: CloseInvalidPayload, Msg: "compressed message does not inflate"}
)

// Close payload violations (RFC 6455 §5.5.1, §7.4).
var (
	ErrCloseOneByte     = protocolError("close payload of one byte")
	ErrCloseCodeIllegal = protocolError("close code not allowed on the wire")
	ErrCloseReasonUTF8  = &Error{Code: CloseInvalidPayload, Msg: "close reason is not valid UTF-8"}
)

// ErrShortHeader is returned by DecodeHeader when b holds only part of a
// header; it is not a protocol violation.
var ErrShortHeader = errors.New("websocket: incomplete frame header")

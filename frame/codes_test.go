package frame_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"wsgate/frame"
)

// §5.2 and §11.8: the opcode table.
func TestOpcode(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		op                      frame.Opcode
		control, data, reserved bool
		name                    string
	}{
		{0x0, false, true, false, "continuation"},
		{0x1, false, true, false, "text"},
		{0x2, false, true, false, "binary"},
		{0x3, false, false, true, "opcode(3)"},
		{0x4, false, false, true, "opcode(4)"},
		{0x5, false, false, true, "opcode(5)"},
		{0x6, false, false, true, "opcode(6)"},
		{0x7, false, false, true, "opcode(7)"},
		{0x8, true, false, false, "close"},
		{0x9, true, false, false, "ping"},
		{0xA, true, false, false, "pong"},
		{0xB, true, false, true, "opcode(11)"},
		{0xC, true, false, true, "opcode(12)"},
		{0xD, true, false, true, "opcode(13)"},
		{0xE, true, false, true, "opcode(14)"},
		{0xF, true, false, true, "opcode(15)"},
		{0x10, false, false, true, "opcode(16)"},
		{0xFF, true, false, true, "opcode(255)"},
	} {
		if c.op.IsControl() != c.control || c.op.IsData() != c.data || c.op.IsReserved() != c.reserved {
			t.Errorf("§5.2 opcode %#x: control, data, reserved = %v, %v, %v; want %v, %v, %v",
				uint8(c.op), c.op.IsControl(), c.op.IsData(), c.op.IsReserved(), c.control, c.data, c.reserved)
		}
		if s := c.op.String(); s != c.name {
			t.Errorf("Opcode(%#x).String() = %q, want %q", uint8(c.op), s, c.name)
		}
	}
}

func TestCloseCodeString(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		code frame.CloseCode
		want string
	}{
		{frame.CloseNormal, "normal closure"},
		{frame.CloseGoingAway, "going away"},
		{frame.CloseProtocolError, "protocol error"},
		{frame.CloseUnsupportedData, "unsupported data"},
		{frame.CloseNoStatus, "no status"},
		{frame.CloseAbnormal, "abnormal closure"},
		{frame.CloseInvalidPayload, "invalid payload data"},
		{frame.ClosePolicyViolation, "policy violation"},
		{frame.CloseMessageTooBig, "message too big"},
		{frame.CloseMandatoryExtension, "mandatory extension"},
		{frame.CloseInternalError, "internal error"},
		{frame.CloseServiceRestart, "service restart"},
		{frame.CloseTryAgainLater, "try again later"},
		{frame.CloseBadGateway, "bad gateway"},
		{frame.CloseTLSHandshake, "TLS handshake"},
		{1004, "close code 1004"},
		{4000, "close code 4000"},
		{0, "close code 0"},
	} {
		if got := c.code.String(); got != c.want {
			t.Errorf("CloseCode(%d).String() = %q, want %q", uint16(c.code), got, c.want)
		}
	}
	// The named codes are the numbers of §7.4.1 and the IANA registry.
	for code, want := range map[frame.CloseCode]int{
		frame.CloseNormal: 1000, frame.CloseGoingAway: 1001, frame.CloseProtocolError: 1002,
		frame.CloseUnsupportedData: 1003, frame.CloseNoStatus: 1005, frame.CloseAbnormal: 1006,
		frame.CloseInvalidPayload: 1007, frame.ClosePolicyViolation: 1008, frame.CloseMessageTooBig: 1009,
		frame.CloseMandatoryExtension: 1010, frame.CloseInternalError: 1011, frame.CloseServiceRestart: 1012,
		frame.CloseTryAgainLater: 1013, frame.CloseBadGateway: 1014, frame.CloseTLSHandshake: 1015,
	} {
		if int(code) != want {
			t.Errorf("%v = %d, want %d", code, code, want)
		}
	}
}

// §7.4.1: every violation carries the code the peer must receive, through
// wrapping too, and errors.Is works on the sentinels.
func TestErrorCodes(t *testing.T) {
	t.Parallel()
	for err, want := range wantCode {
		if got, ok := frame.CodeOf(err); !ok || got != want {
			t.Errorf("CodeOf(%v) = %d, %v; want %d", err, got, ok, want)
		}
		wrapped := fmt.Errorf("relay: %w", err)
		if got, ok := frame.CodeOf(wrapped); !ok || got != want {
			t.Errorf("CodeOf(wrapped %v) = %d, %v; want %d", err, got, ok, want)
		}
		if !errors.Is(wrapped, err) {
			t.Errorf("errors.Is(wrapped, %v) = false", err)
		}
		if !strings.HasPrefix(err.Error(), "websocket: ") {
			t.Errorf("%q lacks the websocket: prefix", err.Error())
		}
	}
	for _, err := range []error{nil, io.EOF, io.ErrUnexpectedEOF, frame.ErrShortHeader} {
		if code, ok := frame.CodeOf(err); ok {
			t.Errorf("CodeOf(%v) = %d, true; want false", err, code)
		}
	}
}

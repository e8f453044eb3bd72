package frame

import "strconv"

// Opcode is the 4-bit frame opcode (RFC 6455 §5.2, §11.8).
type Opcode uint8

// The opcodes defined by RFC 6455 §5.2. Every other value is reserved.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

// IsControl reports whether op is a control opcode (RFC 6455 §5.5: the most
// significant opcode bit is set). Reserved control opcodes count as control.
func (op Opcode) IsControl() bool { return op&0x8 != 0 }

// IsData reports whether op is a data opcode: continuation, text or binary.
func (op Opcode) IsData() bool { return op <= OpBinary }

// IsReserved reports whether op is one of the reserved opcodes 0x3-0x7 and
// 0xB-0xF (RFC 6455 §5.2), or out of the 4-bit range.
func (op Opcode) IsReserved() bool {
	switch op {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
		return false
	}
	return true
}

func (op Opcode) String() string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return "opcode(" + strconv.Itoa(int(op)) + ")"
}

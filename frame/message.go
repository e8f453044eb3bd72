package frame

// Message tracks the data message in progress in one direction of a
// connection: fragmentation order (RFC 6455 §5.4), the message size cap, and
// UTF-8 validity of text messages across frames (§5.6, §8.1). The zero value
// has no cap and no message in progress.
//
// Control frames may be interleaved with the fragments of a data message
// (§5.4); Next accepts them without touching the data message's state.
type Message struct {
	// MaxSize caps the sum of a message's frame payloads; 0 means no cap.
	MaxSize int64

	active bool   // a fragmented message is in progress (its last frame had FIN clear)
	text   bool   // the message in progress is text
	fin    bool   // the current data frame is the message's last
	data   bool   // the current frame is a data frame
	size   int64  // payload bytes of the message so far, including the current frame
	op     Opcode // opcode of the message's first frame
	// compressed: the message's first frame had RSV1, which a negotiated
	// permessage-deflate makes "Per-Message Compressed" (RFC 7692 §6): its
	// payload is deflate data, so the UTF-8 of a text message is checked
	// after inflation, by the caller, not here.
	compressed bool
	utf8       UTF8
}

// Next checks the header of the next frame against the message state and the
// size cap. Call it before reading the frame's payload.
func (m *Message) Next(h Header) error {
	m.data = h.Opcode.IsData()
	if !m.data {
		return nil
	}
	if h.Opcode == OpContinuation {
		if !m.active {
			return ErrContinuationNoStart
		}
		// RFC 7692 §6.1: RSV1 only on a message's first frame. (Without
		// an extension that allows RSV1, DecodeHeader refused it already.)
		if h.Rsv&Rsv1 != 0 {
			return ErrRsv1NotFirst
		}
	} else {
		if m.active {
			return ErrExpectedContinuation
		}
		m.op = h.Opcode
		m.text = h.Opcode == OpText
		m.compressed = h.Rsv&Rsv1 != 0
		m.size = 0
		m.utf8.Reset()
	}
	// Both are at most 2^63-1; compare without overflowing.
	if m.MaxSize > 0 && h.Length > m.MaxSize-m.size {
		return ErrMessageTooBig
	}
	m.size += h.Length
	m.active = !h.Fin
	m.fin = h.Fin
	return nil
}

// Payload feeds unmasked payload bytes of the current frame. For a text
// message it validates UTF-8, failing as early as the bytes allow.
func (m *Message) Payload(p []byte) error {
	if m.data && m.text && !m.compressed && !m.utf8.Write(p) {
		return ErrInvalidUTF8
	}
	return nil
}

// EndFrame is called once the current frame's payload has been fed. At the
// end of a text message it fails if the message stopped inside a code point.
func (m *Message) EndFrame() error {
	if m.data && m.fin && m.text && !m.compressed && !m.utf8.Complete() {
		return ErrInvalidUTF8
	}
	return nil
}

// Compressed reports whether the message in progress (or just finished)
// had RSV1 on its first frame: permessage-deflate data (RFC 7692 §6).
func (m *Message) Compressed() bool { return m.compressed }

// Final reports whether the current data frame is its message's last.
func (m *Message) Final() bool { return m.fin }

// InMessage reports whether a fragmented message is in progress.
func (m *Message) InMessage() bool { return m.active }

// Opcode returns the opcode (text or binary) of the message in progress or
// just finished.
func (m *Message) Opcode() Opcode { return m.op }

// Reset forgets any message in progress; MaxSize is kept.
func (m *Message) Reset() { *m = Message{MaxSize: m.MaxSize} }

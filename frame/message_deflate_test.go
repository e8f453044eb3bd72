package frame_test

import (
	"testing"

	"wsgate/frame"
)

// TestMessageCompressed: RSV1 on a first frame marks the message compressed
// (RFC 7692 §6): its payload is deflate data, not UTF-8, so Message leaves
// the text check to whoever inflates it. RSV1 on a continuation is a
// protocol error.
func TestMessageCompressed(t *testing.T) {
	t.Parallel()
	var m frame.Message
	h := frame.Header{Opcode: frame.OpText, Rsv: frame.Rsv1, Length: 2}
	if err := m.Next(h); err != nil || !m.Compressed() {
		t.Fatalf("Next = %v, Compressed = %v", err, m.Compressed())
	}
	if err := m.Payload([]byte{0xff, 0xfe}); err != nil {
		t.Fatalf("compressed payload checked as UTF-8: %v", err)
	}
	if err := m.EndFrame(); err != nil || !m.InMessage() {
		t.Fatalf("EndFrame = %v, InMessage = %v", err, m.InMessage())
	}
	if err := m.Next(frame.Header{Opcode: frame.OpContinuation, Rsv: frame.Rsv1, Fin: true}); err != frame.ErrRsv1NotFirst {
		t.Fatalf("RSV1 on a continuation: %v", err)
	}
	if code, _ := frame.CodeOf(frame.ErrRsv1NotFirst); code != frame.CloseProtocolError {
		t.Fatalf("code %d", code)
	}

	// The next message without RSV1 is checked again.
	m.Reset()
	if err := m.Next(frame.Header{Opcode: frame.OpText, Fin: true, Length: 1}); err != nil || m.Compressed() {
		t.Fatalf("Next = %v, Compressed = %v", err, m.Compressed())
	}
	if err := m.Payload([]byte{0xff}); err != frame.ErrInvalidUTF8 {
		t.Fatalf("uncompressed bad UTF-8: %v", err)
	}
}

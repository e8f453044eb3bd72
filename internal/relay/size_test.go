package relay

import (
	"testing"
	"unsafe"
)

// TestSessionSizeClass: a Session is an idle session's biggest single
// allocation; it must fit Go's 1024-byte size class (the next one is 1152
// bytes, 128 more per session: README "Benchmarks", idle-mem). A field added
// here must be paid for by one taken out, or moved off the Session.
func TestSessionSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 1024 {
		t.Errorf("Session is %d bytes: over the 1024-byte size class", n)
	}
}

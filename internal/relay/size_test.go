package relay

import (
	"testing"
	"unsafe"
)

// TestSessionSizeClass: a Session is an idle session's biggest single
// allocation; it must fit Go's 896-byte size class (the next one is 1024
// bytes, 128 more per session: BENCHMARKS.md "Performance, part 3",
// idle-mem). A field added here must be paid for by one taken out, or
// moved off the Session; mind the padding (a bool between two pointers
// costs eight bytes).
func TestSessionSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 896 {
		t.Errorf("Session is %d bytes: over the 896-byte size class", n)
	}
}

package relay

import "testing"

// TestPollerLegs: the poller's descriptor table records, replaces and
// forgets legs, and counts what it watches.
func TestPollerLegs(t *testing.T) {
	p := NewPoller()
	if p == nil {
		t.Skip("no epoll here")
	}
	defer p.Close()
	a, b := new(leg), new(leg)
	p.mu.Lock()
	p.setLeg(3, a)
	p.setLeg(700, b)
	p.setLeg(3, b) // descriptor 3 reused by another connection
	got3, got700, got5, gotNeg := p.legOf(3), p.legOf(700), p.legOf(5), p.legOf(-1)
	p.mu.Unlock()
	if got3 != b || got700 != b || got5 != nil || gotNeg != nil {
		t.Fatalf("legOf: 3→%p 700→%p 5→%p -1→%p", got3, got700, got5, gotNeg)
	}
	if n := p.Watching(); n != 2 {
		t.Fatalf("Watching = %d, want 2", n)
	}
	p.mu.Lock()
	p.setLeg(700, nil)
	p.setLeg(9000, nil) // beyond the table: nothing to forget
	p.mu.Unlock()
	if n := p.Watching(); n != 1 {
		t.Fatalf("Watching = %d after forgetting one, want 1", n)
	}
}

package relay

import (
	"testing"
	"time"
)

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

// TestPollerTimers: the parked legs' timers come due in deadline order,
// whatever order they were set, reset or stopped in, and the loop sleeps
// until the first (at most pollWait, rounded up to a millisecond).
func TestPollerTimers(t *testing.T) {
	p := NewPoller()
	if p == nil {
		t.Skip("no epoll here")
	}
	defer p.Close()
	ms := int64(time.Millisecond)
	legs := make([]*leg, 6)
	for i := range legs {
		legs[i] = new(leg)
	}
	// Deadlines far in the future of the poller's clock (its loop never
	// reaches them), read through popDue at chosen moments.
	base := p.now() + int64(time.Hour)
	set := p.scheduleAt
	set(legs[0], base+50*ms)
	set(legs[1], base+10*ms)
	set(legs[2], base+30*ms)
	set(legs[3], base+20*ms)
	set(legs[4], base+40*ms)
	set(legs[5], base+5*ms)
	set(legs[2], base+60*ms) // reset later
	p.unschedule(legs[4])    // stopped
	p.unschedule(legs[4])    // twice is harmless
	got, wait := p.popDue(base+2*ms+1, nil)
	if len(got) != 0 || wait != 3 {
		t.Fatalf("popDue before any deadline = %d legs, wait %d ms; want none, 3 ms (rounded up)", len(got), wait)
	}
	got, wait = p.popDue(base+25*ms, nil)
	if len(got) != 3 || got[0] != legs[5] || got[1] != legs[1] || got[2] != legs[3] {
		t.Fatalf("popDue at +25ms = %v, want legs 5, 1, 3 in that order", got)
	}
	if wait != 25 {
		t.Errorf("wait after +25ms = %d ms, want 25 (to +50ms)", wait)
	}
	for _, l := range got {
		if l.pidx != 0 {
			t.Errorf("a popped leg keeps heap index %d", l.pidx)
		}
	}
	got, _ = p.popDue(base+time.Hour.Nanoseconds(), nil)
	if len(got) != 2 || got[0] != legs[0] || got[1] != legs[2] {
		t.Fatalf("popDue at the end = %v, want legs 0, 2", got)
	}
	if _, wait := p.popDue(base, nil); wait != pollWait {
		t.Errorf("wait with no timers = %d ms, want pollWait (%d)", wait, pollWait)
	}
}

// TestPollerTimerWakes: a timer set earlier than the loop's wake-up wakes
// the loop, which then takes the timer when it comes due.
func TestPollerTimerWakes(t *testing.T) {
	p := NewPoller()
	if p == nil {
		t.Skip("no epoll here")
	}
	defer p.Close()
	wakeAt := func() int64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.wakeAt
	}
	deadline := time.Now().Add(10 * time.Second)
	// The loop sleeps toward a wake-up (no timers: pollWait away).
	w := wakeAt()
	for ; w == 0; w = wakeAt() {
		if time.Now().After(deadline) {
			t.Fatal("the poller's loop never slept")
		}
		time.Sleep(time.Millisecond)
	}
	// A deadline before it: the loop's wake-up only moves later while
	// no timer is set, so this one is earlier than whatever it is now.
	before := p.wakes.Load()
	l := new(leg)
	p.scheduleAt(l, w-1)
	if got := p.wakes.Load(); got != before+1 {
		t.Fatalf("a timer before the loop's wake-up wrote %d wake bytes, want 1", got-before)
	}
	// The loop takes the first (the leg is not parked: unpark does nothing).
	for {
		p.mu.Lock()
		idx := l.pidx
		p.mu.Unlock()
		if idx == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the loop never took the timer that came due")
		}
		time.Sleep(time.Millisecond)
	}
}

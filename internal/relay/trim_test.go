package relay

import "testing"

func TestTrimPolicy(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name                             string
		objects, live, allocated, parked uint64
		want                             bool
	}{
		{"quiet after a burst", 200 * mib, 40 * mib, 0, 0, true},
		{"still allocating", 200 * mib, 40 * mib, 50 * mib, 0, false},
		{"little garbage", 41 * mib, 40 * mib, 0, 0, false},
		{"garbage small next to live", 1100 * mib, 1000 * mib, 0, 0, false},
		{"garbage an eighth of live", 1130 * mib, 1000 * mib, 0, 0, true},
		{"garbage under the floor", 2*mib + mib/2, 1 * mib, 0, 0, false},
		{"garbage at the floor", 3 * mib, 1 * mib, 0, 0, true},
		// Legs that parked after the burst's trim: a few hundred read
		// buffers in the pool.
		{"stragglers parked after a trim", 20 * mib, 20 * mib, 0, 3 * mib, true},
		{"just collected", 40 * mib, 40 * mib, 0, 0, false},
		{"live above objects (sampling)", 39 * mib, 40 * mib, 0, 0, false},
		// The last collection ran at the burst's peak: the heap looks
		// collected, but parking has given up buffers and stacks since.
		{"parked since a collection at the peak", 200 * mib, 200 * mib, 0, 80 * mib, true},
		{"a few parks", 200 * mib, 200 * mib, 0, 1 * mib, false},
		{"a few parks, small heap", 20 * mib, 20 * mib, 0, 1 * mib, false},
		{"parked while busy", 200 * mib, 200 * mib, 50 * mib, 80 * mib, false},
	} {
		if got := trimPolicy(c.objects, c.live, c.allocated, c.parked); got != c.want {
			t.Errorf("%s: trimPolicy(%d, %d, %d, %d) = %v, want %v", c.name, c.objects, c.live, c.allocated, c.parked, got, c.want)
		}
	}
}

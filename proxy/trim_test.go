package proxy

import "testing"

func TestTrimPolicy(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name                     string
		objects, live, allocated uint64
		want                     bool
	}{
		{"quiet after a burst", 200 * mib, 40 * mib, 0, true},
		{"still allocating", 200 * mib, 40 * mib, 50 * mib, false},
		{"little garbage", 41 * mib, 40 * mib, 0, false},
		{"garbage small next to live", 1100 * mib, 1000 * mib, 0, false},
		{"garbage an eighth of live", 1130 * mib, 1000 * mib, 0, true},
		{"garbage under the floor", 6 * mib, 1 * mib, 0, false},
		{"just collected", 40 * mib, 40 * mib, 0, false},
		{"live above objects (sampling)", 39 * mib, 40 * mib, 0, false},
	} {
		if got := trimPolicy(c.objects, c.live, c.allocated); got != c.want {
			t.Errorf("%s: trimPolicy(%d, %d, %d) = %v, want %v", c.name, c.objects, c.live, c.allocated, got, c.want)
		}
	}
}

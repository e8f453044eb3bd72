package ratelimit

// Sharing a Keyed limiter's buckets with other processes (README "Running
// several instances"): each process decides on its own buckets, with no
// round trip per call, and from time to time reports what it took (TakeUsed)
// and learns the shared level of each bucket (SetLevel). Between two
// exchanges the processes may together take more than one bucket holds: the
// lag is the price of keeping the calls local.

import (
	"math"
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// Used is what AllowN took for one key since the last TakeUsed.
type Used struct {
	Key netip.Addr
	N   int64
}

// Track makes k record the tokens AllowN takes per key, for TakeUsed. Call
// it before k is used.
func (k *Keyed) Track() {
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		if s.used == nil {
			s.used = make(map[netip.Addr]int64)
		}
		s.mu.Unlock()
	}
}

// Limit returns the rate of every bucket.
func (k *Keyed) Limit() rate.Limit { return k.limit }

// TakeUsed appends to buf, and forgets, what AllowN took per key since the
// last call, for at most max keys (the rest stay for the next call); it
// returns the extended buf. k must be tracked (Track).
func (k *Keyed) TakeUsed(buf []Used, max int) []Used {
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		for key, n := range s.used {
			if len(buf) >= max {
				break
			}
			buf = append(buf, Used{key, n})
			delete(s.used, key)
		}
		s.mu.Unlock()
	}
	return buf
}

// SetLevel sets key's bucket to hold level tokens at now, less what AllowN
// has taken for key since the last TakeUsed (those are not in level yet).
// level may be negative: a debt, paid back at the limiter's rate before
// the key gets another token (at most 64 bursts of it are kept). A level
// at or above the burst forgets the key, as a full bucket is worth
// nothing.
func (k *Keyed) SetLevel(key netip.Addr, now time.Time, level float64) {
	s := &k.shards[shardOf(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used != nil {
		level -= float64(s.used[key])
	}
	level = max(level, -64*float64(k.burst))
	if level >= float64(k.burst) {
		delete(s.m, key)
		return
	}
	if _, ok := s.m[key]; !ok && len(s.m) >= k.perShard {
		s.evict(now, k.burst)
	}
	lim := rate.NewLimiter(k.limit, k.burst) // full
	// Take what is missing, whole tokens (rounding the level down), at
	// most a burst per reservation.
	missing := math.Ceil(float64(k.burst) - level)
	for missing > 0 {
		n := int(min(missing, float64(k.burst)))
		lim.ReserveN(now, n)
		missing -= float64(n)
	}
	s.m[key] = lim
}

// Tokens returns the tokens key's bucket holds at now (the burst for a key
// that has none).
func (k *Keyed) Tokens(key netip.Addr, now time.Time) float64 {
	s := &k.shards[shardOf(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if lim := s.m[key]; lim != nil {
		return lim.TokensAt(now)
	}
	return float64(k.burst)
}

// Each calls fn for every key with at least one holder, and its count.
// fn must not call c's methods.
func (c *Counter) Each(fn func(key netip.Addr, n int)) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for key, n := range s.m {
			fn(key, n)
		}
		s.mu.Unlock()
	}
}

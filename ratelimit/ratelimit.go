// Package ratelimit provides keyed token buckets with bounded memory and
// per-key concurrency counters, for limits that apply per client address.
//
// A Keyed limiter holds one golang.org/x/time/rate bucket per key. Memory is
// bounded by design, three ways:
//
//   - A bucket that has refilled is worth nothing: forgetting it and starting
//     a new full one later changes no decision. Each shard drops its full
//     buckets every so often (Sweep), on the calling goroutine, so memory
//     follows the set of keys that are actually being limited.
//   - The key space is split over shards, each with a hard cap on its number
//     of keys. When a shard is full, a new key evicts one of a few sampled
//     keys: the one whose bucket holds the most tokens at that moment, so the
//     least is lost. An attacker rotating through addresses fills the shard
//     with keys that have spent one token each; a key that is being limited
//     (an empty bucket) is the last to go, so rotating addresses does not
//     reset the limit of an address that is over it.
//   - An evicted bucket that is full is reused for the new key, so a steady
//     flood of new keys costs no allocation.
//
// Keys are netip.Addr values; Key folds an IPv6 address to its /64, since one
// host usually owns a whole /64 and could otherwise rotate through it.
//
// Methods take an explicit now, in the style of x/time/rate's AllowN, so
// tests need no fake clock. Calls for one key should come with
// non-decreasing times; an earlier time is treated as "no time passed".
package ratelimit

import (
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const shards = 64

// sample is how many keys an eviction looks at.
const sample = 5

// Key returns the key a client address is limited under: an IPv4 address as
// it is (an IPv4-mapped IPv6 address as IPv4), an IPv6 address folded to its
// /64.
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

var seed = maphash.MakeSeed()

func shardOf(k netip.Addr) int {
	b := k.As16()
	return int(maphash.Bytes(seed, b[:]) % shards)
}

// Keyed is a set of token buckets, one per key: r tokens per second up to
// burst. The zero value is not usable; use NewKeyed. It is safe for
// concurrent use; keys in different shards never contend.
type Keyed struct {
	limit    rate.Limit
	burst    int
	perShard int
	sweep    time.Duration // how often a shard drops its full buckets
	shards   [shards]keyedShard
}

type keyedShard struct {
	mu        sync.Mutex
	m         map[netip.Addr]*rate.Limiter
	nextSweep time.Time
	used      map[netip.Addr]int64      // tokens taken since TakeUsed; nil unless Track (shared.go)
	_         [64 - 8 - 8 - 24 - 8]byte // one cache line each: shards do not share
}

// NewKeyed returns a limiter of r tokens per second with the given burst per
// key, holding at most maxKeys keys (rounded up to a multiple of the shard
// count, 64). r must be finite and positive, burst at least 1.
func NewKeyed(r rate.Limit, burst, maxKeys int) *Keyed {
	k := &Keyed{limit: r, burst: max(1, burst), perShard: max(1, (maxKeys+shards-1)/shards)}
	// A bucket is full again at most burst/r after its last use; sweeping
	// more often than that finds nothing new, much less often lets idle
	// keys linger. Bounded so that slow rates still get swept.
	refill := time.Duration(float64(k.burst) / float64(r) * float64(time.Second))
	if r <= 0 || math.IsInf(float64(r), 1) || refill <= 0 {
		refill = time.Minute
	}
	k.sweep = min(max(refill, time.Second), time.Minute)
	for i := range k.shards {
		k.shards[i].m = make(map[netip.Addr]*rate.Limiter)
	}
	return k
}

// MaxKeys returns the hard cap on the number of keys held.
func (k *Keyed) MaxKeys() int { return k.perShard * shards }

// Burst returns the burst of every bucket.
func (k *Keyed) Burst() int { return k.burst }

// Len returns the number of keys held.
func (k *Keyed) Len() int {
	n := 0
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// AllowN reports whether n tokens may be taken for key at now, and takes them
// if so. If not, nothing is taken, and retry is how long until n tokens will
// be there if nobody else takes any (0 if n exceeds the burst: never).
func (k *Keyed) AllowN(key netip.Addr, now time.Time, n int) (ok bool, retry time.Duration) {
	s := &k.shards[shardOf(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.After(s.nextSweep) {
		s.sweepFull(now, k.burst)
		s.nextSweep = now.Add(k.sweep)
	}
	lim := s.m[key]
	if lim == nil {
		if len(s.m) >= k.perShard {
			lim = s.evict(now, k.burst)
		}
		if lim == nil {
			lim = rate.NewLimiter(k.limit, k.burst)
		}
		s.m[key] = lim
	}
	if lim.AllowN(now, n) {
		if s.used != nil {
			// Bounded like the buckets: past the cap, new keys go
			// unreported until the next TakeUsed.
			if _, ok := s.used[key]; ok || len(s.used) < k.perShard {
				s.used[key] += int64(n)
			}
		}
		return true, 0
	}
	if n > k.burst {
		return false, 0
	}
	return false, Delay(lim, now, n)
}

// Delay returns how long from now until lim holds n tokens (0 if it does
// already), rounded up to the nanosecond so that a caller who waits exactly
// that long finds them. n must not exceed lim's burst.
func Delay(lim *rate.Limiter, now time.Time, n int) time.Duration {
	missing := float64(n) - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	r := float64(lim.Limit())
	if r <= 0 {
		return math.MaxInt64
	}
	d := math.Ceil(missing / r * float64(time.Second))
	if d >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(d)
}

// evict removes one key to make room: of a few keys sampled (map iteration
// starts at a random place), the one whose bucket is fullest at now. It
// returns the evicted bucket if it was full, for reuse: a full bucket is as
// good as a new one. The caller holds s.mu.
func (s *keyedShard) evict(now time.Time, burst int) *rate.Limiter {
	var victim netip.Addr
	var vlim *rate.Limiter
	most := math.Inf(-1)
	i := 0
	for key, lim := range s.m {
		if t := lim.TokensAt(now); t > most {
			victim, vlim, most = key, lim, t
		}
		if i++; i == sample {
			break
		}
	}
	if vlim == nil {
		return nil
	}
	delete(s.m, victim)
	if most >= float64(burst) {
		return vlim
	}
	return nil
}

// sweepFull drops the keys whose bucket is full at now. The caller holds
// s.mu.
func (s *keyedShard) sweepFull(now time.Time, burst int) {
	for key, lim := range s.m {
		if lim.TokensAt(now) >= float64(burst) {
			delete(s.m, key)
		}
	}
}

// Sweep drops every key whose bucket is full at now: forgetting it changes
// no decision. AllowN sweeps each shard by itself from time to time; Sweep
// is for tests and for callers that want memory back at once.
func (k *Keyed) Sweep(now time.Time) {
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		s.sweepFull(now, k.burst)
		s.mu.Unlock()
	}
}

// Counter counts concurrent holders per key (open sessions, or unfinished
// handshakes, per client address). A key is forgotten when its count returns
// to zero, so memory follows the number of holders. The zero value is ready
// to use.
type Counter struct {
	shards [shards]counterShard
}

type counterShard struct {
	mu sync.Mutex
	m  map[netip.Addr]int
	_  [64 - 8 - 8]byte
}

// Acquire adds a holder for key unless it already has max (max <= 0 means
// no limit). It reports whether it did.
func (c *Counter) Acquire(key netip.Addr, max int) bool {
	s := &c.shards[shardOf(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[netip.Addr]int)
	}
	if max > 0 && s.m[key] >= max {
		return false
	}
	s.m[key]++
	return true
}

// Release removes a holder for key.
func (c *Counter) Release(key netip.Addr) {
	s := &c.shards[shardOf(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.m[key]; n <= 1 {
		delete(s.m, key)
	} else {
		s.m[key] = n - 1
	}
}

// Count returns the number of holders for key.
func (c *Counter) Count(key netip.Addr) int {
	s := &c.shards[shardOf(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key]
}

// Keys returns the number of keys with at least one holder.
func (c *Counter) Keys() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Package ratelimit provides keyed token buckets with bounded memory and
// per-key concurrency counters, for limits that apply per client address.
//
// A Keyed limiter holds one golang.org/x/time/rate bucket per key. Memory is
// bounded by design: the key space is split over shards, each with a hard cap
// on its number of keys; when a shard is full, a new key evicts the least
// recently used of a few sampled keys (approximate LRU, in constant time).
// Evicting a bucket is harmless when it has refilled (an idle key's bucket is
// as good as a new one), and the sampling prefers exactly those, so an
// attacker rotating addresses can only push out other idle keys.
//
// Keys are netip.Addr values; Key folds an IPv6 address to its /64, since one
// host usually owns a whole /64 and could otherwise rotate through it.
//
// Methods take an explicit now, in the style of x/time/rate's AllowN, so
// tests need no fake clock.
package ratelimit

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const shards = 64

// sample is how many keys an eviction looks at.
const sample = 5

// Key returns the key a client address is limited under: an IPv4 address as
// it is, an IPv6 address folded to its /64.
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
	r        rate.Limit
	burst    int
	perShard int
	shards   [shards]keyedShard
}

type keyedShard struct {
	mu sync.Mutex
	m  map[netip.Addr]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// NewKeyed returns a limiter of r per second with the given burst per key,
// holding at most about maxKeys keys (rounded up to a multiple of the shard
// count).
func NewKeyed(r rate.Limit, burst, maxKeys int) *Keyed {
	k := &Keyed{r: r, burst: burst, perShard: max(1, (maxKeys+shards-1)/shards)}
	for i := range k.shards {
		k.shards[i].m = make(map[netip.Addr]*bucket)
	}
	return k
}

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
// if so. If not, retry is how long until they would be available (0 if n
// exceeds the burst and never will be).
func (k *Keyed) AllowN(key netip.Addr, now time.Time, n int) (ok bool, retry time.Duration) {
	s := &k.shards[shardOf(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.m[key]
	if b == nil {
		if len(s.m) >= k.perShard {
			s.evict(now)
		}
		b = &bucket{}
		b.lim = rate.NewLimiter(k.r, k.burst)
		s.m[key] = b
	}
	b.last = now
	if b.lim.AllowN(now, n) {
		return true, 0
	}
	if n > k.burst {
		return false, 0
	}
	r := b.lim.ReserveN(now, n)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return false, d
}

// evict removes one key: of a few keys sampled (map iteration order is
// random), the one used longest ago. The caller holds s.mu.
func (s *keyedShard) evict(now time.Time) {
	var victim netip.Addr
	var oldest time.Time
	i := 0
	for key, b := range s.m {
		if i == 0 || b.last.Before(oldest) {
			victim, oldest = key, b.last
		}
		if i++; i == sample {
			break
		}
	}
	delete(s.m, victim)
}

// Sweep removes the keys not used since before cutoff. The gateway calls it
// periodically so that memory follows the active key set, not the cap.
func (k *Keyed) Sweep(cutoff time.Time) {
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		for key, b := range s.m {
			if b.last.Before(cutoff) {
				delete(s.m, key)
			}
		}
		s.mu.Unlock()
	}
}

// Counter counts concurrent holders per key (open sessions per client
// address). A key is forgotten when its count returns to zero, so memory
// follows the number of holders.
type Counter struct {
	shards [shards]counterShard
}

type counterShard struct {
	mu sync.Mutex
	m  map[netip.Addr]int
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

package balance

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Balance is how a Pool orders a route's upstreams for a handshake (the
// route's `balance` key).
type Balance int

const (
	// RoundRobin spreads handshakes over the upstreams in proportion to their
	// weights, interleaved (smooth weighted round robin, as in nginx): weights
	// 1 and 2 give B A B B A B …, never long bursts of one upstream.
	RoundRobin Balance = iota
	// LeastConn picks the upstream with the fewest active sessions per unit of
	// weight; equal upstreams take turns.
	LeastConn
	// IPHash keeps each client address on one upstream while it is up
	// (weighted rendezvous hashing, stable across processes and restarts).
	IPHash
	// Cookie places a new client as RoundRobin does; the gateway then keeps
	// it on that upstream with a sticky cookie (see Sticky).
	Cookie
)

// ParseBalance parses a route's `balance` value. The empty string is the
// default, round_robin.
func ParseBalance(s string) (Balance, error) {
	switch s {
	case "round_robin", "":
		return RoundRobin, nil
	case "least_conn":
		return LeastConn, nil
	case "ip_hash":
		return IPHash, nil
	case "cookie":
		return Cookie, nil
	}
	return 0, fmt.Errorf("balance %q: want round_robin, least_conn, ip_hash or cookie", s)
}

func (b Balance) String() string {
	switch b {
	case RoundRobin:
		return "round_robin"
	case LeastConn:
		return "least_conn"
	case IPHash:
		return "ip_hash"
	case Cookie:
		return "cookie"
	}
	return fmt.Sprintf("Balance(%d)", int(b))
}

// MaxWeight is the largest upstream weight; larger weights are clamped to it
// (as HAProxy does). It bounds the round-robin schedule, which has one slot
// per unit of weight.
const MaxWeight = 256

// Passive health (docs/handshake.md "Dialling the upstream": a failed dial
// marks that upstream down for a short back-off): the first failure backs off for
// backoffMin, each further consecutive failure doubles it, up to backoffMax:
// 1s, 2s, 4s, 8s, 16s, 30s, 30s …
const (
	backoffMin = BackoffMin
	backoffMax = 30 * time.Second
)

// BackoffMin is the first back-off of an upstream that failed.
const BackoffMin = time.Second

// Backend is one configured upstream of a route. Its counters are safe for
// concurrent use. A Backend belongs to one Pool.
type Backend struct {
	// Key identifies the upstream: its URL as configured. It is the
	// `upstream` label of metrics and what ip_hash hashes, so clients keep
	// their upstream when the list is reordered.
	Key string
	// Weight is the upstream's share of round_robin and least_conn, from 1 to
	// MaxWeight. NewPool reads it; changing it later has no effect.
	Weight int

	active    atomic.Int64 // sessions running on it
	downUntil atomic.Int64 // unix nanoseconds; up from then on (0: never failed)
	drained   atomic.Bool

	mu       sync.Mutex // serialises Failed and Succeeded
	failures int        // consecutive failures; guarded by mu
}

// NewBackend returns a Backend for the upstream key, with weight clamped to
// 1..MaxWeight (so an unset weight of 0 means 1).
func NewBackend(key string, weight int) *Backend {
	return &Backend{Key: key, Weight: clampWeight(weight)}
}

func clampWeight(w int) int {
	return min(max(w, 1), MaxWeight)
}

// Active returns the number of sessions running on b.
func (b *Backend) Active() int64 { return b.active.Load() }

// Acquire counts a session on b. Call it as soon as a dial to b starts (and
// Release if the dial fails), so that a burst of handshakes under least_conn
// does not all pick the same upstream before any of them is counted.
func (b *Backend) Acquire() { b.active.Add(1) }

// Release ends a session counted by Acquire.
func (b *Backend) Release() { b.active.Add(-1) }

// Up reports whether b is in the rotation at now: not drained and not backing
// off after a failure.
func (b *Backend) Up(now time.Time) bool {
	return !b.drained.Load() && now.UnixNano() >= b.downUntil.Load()
}

// SetDrained takes b out of the rotation (admin drain, docs/relay.md "Reload without
// dropping sessions") or puts it back. A drained upstream is never a
// candidate, not even when every other one is down.
func (b *Backend) SetDrained(drained bool) { b.drained.Store(drained) }

// Drained reports whether b was drained with SetDrained.
func (b *Backend) Drained() bool { return b.drained.Load() }

func (b *Backend) up(t int64) bool {
	return !b.drained.Load() && t >= b.downUntil.Load()
}

// Pool orders a route's upstreams for each handshake and keeps their passive
// health. It is safe for concurrent use; Candidates takes no lock.
type Pool struct {
	balance  Balance
	backends []*Backend
	weight   []int64  // clamped Weight of each backend
	seed     []uint64 // ip_hash: hash of each backend's Key
	sched    []uint32 // round_robin: backend indexes, smooth weighted order
	cursor   atomic.Uint64
}

// NewPool returns a Pool over backends (built with NewBackend, non-nil, in
// configuration order).
func NewPool(balance Balance, backends []*Backend) *Pool {
	p := &Pool{
		balance:  balance,
		backends: slices.Clone(backends),
		weight:   make([]int64, len(backends)),
	}
	for i, b := range p.backends {
		p.weight[i] = int64(clampWeight(b.Weight))
	}
	switch balance {
	case LeastConn:
	default: // RoundRobin, and what Candidates treats as such
		p.sched = smoothSchedule(p.weight)
	case IPHash:
		p.seed = make([]uint64, len(backends))
		for i, b := range p.backends {
			h := fnv1a(fnvOffset, b.Key)
			// The same URL listed twice: give the copies distinct seeds, or
			// the second would never win.
			for _, prev := range p.backends[:i] {
				if prev.Key == b.Key {
					h = fnv1a(h, "#")
				}
			}
			p.seed[i] = mix64(h)
		}
	}
	return p
}

// smoothSchedule lays out one cycle of nginx's smooth weighted round robin:
// each step, every backend gains its weight, the one with the most (the
// first on ties) is picked and pays back the total. Each backend appears
// exactly weight/g times, where g is the weights' greatest common divisor,
// and heavy backends are spread out instead of bunched.
func smoothSchedule(weight []int64) []uint32 {
	if len(weight) == 0 {
		return nil
	}
	g := weight[0]
	for _, w := range weight[1:] {
		g = gcdInt64(g, w)
	}
	var total int64
	w := make([]int64, len(weight))
	for i := range weight {
		w[i] = weight[i] / g
		total += w[i]
	}
	cur := make([]int64, len(weight))
	sched := make([]uint32, 0, total)
	for range total {
		best := 0
		for i := range cur {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		sched = append(sched, uint32(best))
	}
	return sched
}

func gcdInt64(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Balance returns the pool's balancing method.
func (p *Pool) Balance() Balance { return p.balance }

// Backends returns the pool's backends in configuration order (a copy of the
// slice; the backends themselves are shared), e.g. for metrics and drains.
func (p *Pool) Backends() []*Backend { return slices.Clone(p.backends) }

// Candidates appends to dst[:0] up to n distinct backends to try, in order,
// for one handshake (the gateway tries at most 3, docs/handshake.md
// "Dialling the upstream") and returns it; it does not allocate when dst has room for n.
//
// First come the backends that are up: the balancer's choice, then the
// balancer's next choices (round_robin: the following distinct backends of
// the schedule; least_conn: the next least loaded; ip_hash: the client's next
// backends in its own stable order). If fewer than n are up, the backing-off
// ones follow, the one whose back-off ends first first: when every upstream
// failed recently, trying the one that has rested longest beats refusing the
// client. Drained backends are never returned.
//
// clientKey is the client address (an IP in string form); only ip_hash uses
// it (and allocates for pools of more than 32 upstreams). Every call advances the round-robin position, so call it once per
// handshake.
func (p *Pool) Candidates(dst []*Backend, clientKey string, now time.Time, n int) []*Backend {
	dst = dst[:0]
	n = min(n, len(p.backends))
	if n <= 0 {
		return dst
	}
	t := now.UnixNano()
	switch p.balance {
	case LeastConn:
		dst = p.leastConn(dst, t, n)
	case IPHash:
		dst = p.ipHash(dst, clientKey, t, n)
	default:
		dst = p.roundRobin(dst, t, n)
	}
	return p.backingOff(dst, n)
}

// roundRobin walks one cycle of the schedule from the next position. A
// backend that is down passes its slot to the next backend of the schedule,
// so its share is spread in proportion to the others' weights.
func (p *Pool) roundRobin(dst []*Backend, t int64, n int) []*Backend {
	l := uint64(len(p.sched))
	pos := int((p.cursor.Add(1) - 1) % l)
	for range l {
		b := p.backends[p.sched[pos]]
		if b.up(t) && !slices.Contains(dst, b) {
			dst = append(dst, b)
			if len(dst) == n {
				break
			}
		}
		if pos++; pos == len(p.sched) {
			pos = 0
		}
	}
	return dst
}

// leastConn picks, n times, the up backend with the lowest Active/weight.
// The scan starts at a rotating offset and keeps the first of equals, so
// equal backends take turns.
func (p *Pool) leastConn(dst []*Backend, t int64, n int) []*Backend {
	l := len(p.backends)
	off := int(p.cursor.Add(1) % uint64(l))
	for len(dst) < n {
		best, bestActive, bestWeight := -1, int64(0), int64(1)
		for k := range l {
			i := off + k
			if i >= l {
				i -= l
			}
			b := p.backends[i]
			if !b.up(t) || slices.Contains(dst, b) {
				continue
			}
			a := b.Active()
			// a/w < bestActive/bestWeight, without division.
			if best < 0 || a*bestWeight < bestActive*p.weight[i] {
				best, bestActive, bestWeight = i, a, p.weight[i]
			}
		}
		if best < 0 {
			break
		}
		dst = append(dst, p.backends[best])
	}
	return dst
}

// ipHash ranks the up backends by weighted rendezvous hashing (Highest
// Random Weight; Resende & Thaler's logarithmic method): each backend scores
// weight / -ln(u), where u in (0,1) is a hash of the client and the backend's
// Key. The client goes to the highest score. When that backend is down, its
// clients move to their own second choice, which differs from client to
// client, so they spread over the others and nobody else moves; when it comes
// back, they return. Hashes are FNV-1a with a fixed mix, the same in every
// process.
func (p *Pool) ipHash(dst []*Backend, clientKey string, t int64, n int) []*Backend {
	h := mix64(fnv1a(fnvOffset, clientKey))
	var buf [32]float64 // scores computed once per call; on the stack for usual pools
	scores := buf[:0]
	if len(p.backends) > len(buf) {
		scores = make([]float64, 0, len(p.backends))
	}
	for i := range p.backends {
		scores = append(scores, p.score(h, i))
	}
	for len(dst) < n {
		best, bestScore := -1, 0.0
		for i, b := range p.backends {
			if !b.up(t) || slices.Contains(dst, b) {
				continue
			}
			if s := scores[i]; best < 0 || s > bestScore {
				best, bestScore = i, s
			}
		}
		if best < 0 {
			break
		}
		dst = append(dst, p.backends[best])
	}
	return dst
}

func (p *Pool) score(client uint64, i int) float64 {
	x := mix64(client ^ p.seed[i])
	u := (float64(x>>11) + 0.5) / (1 << 53) // in (0,1), never 0 or 1
	return float64(p.weight[i]) / -math.Log(u)
}

// backingOff appends the backends that are neither drained nor already in
// dst, earliest back-off end first (configuration order on ties).
func (p *Pool) backingOff(dst []*Backend, n int) []*Backend {
	for len(dst) < n {
		var best *Backend
		var bestUntil int64
		for _, b := range p.backends {
			if b.drained.Load() || slices.Contains(dst, b) {
				continue
			}
			if u := b.downUntil.Load(); best == nil || u < bestUntil {
				best, bestUntil = b, u
			}
		}
		if best == nil {
			break
		}
		dst = append(dst, best)
	}
	return dst
}

// Failed records that a handshake attempt on b failed at now (refused,
// unreachable, timed out: not an HTTP answer, which is the upstream's word and
// proves it alive). b leaves the rotation for a back-off of 1s, doubling with
// each consecutive failure up to 30s.
//
// A failure reported while b is already backing off does not lengthen the
// back-off: it is the same outage seen by an attempt that started earlier (or
// a last-resort try while every upstream was down), and counting it would let
// a burst of concurrent handshakes push b to the maximum back-off at once.
func (p *Pool) Failed(b *Backend, now time.Time) {
	t := now.UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	if t < b.downUntil.Load() {
		return
	}
	b.failures++
	b.downUntil.Store(t + int64(backoffAfter(b.failures)))
}

// Succeeded records that a handshake on b succeeded: b is up again and its
// failure count starts over.
func (p *Pool) Succeeded(b *Backend) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
	b.downUntil.Store(0)
}

// backoffAfter is the back-off after the given number of consecutive failures.
func backoffAfter(failures int) time.Duration {
	if failures < 1 {
		return 0
	}
	if failures > 16 { // 1s<<15 is far past the cap; avoid shifting further
		return backoffMax
	}
	return min(backoffMin<<(failures-1), backoffMax)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnv1a continues a 64-bit FNV-1a hash over s.
func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix64 is the SplitMix64 finaliser: FNV-1a alone leaves the high bits of
// short, similar keys (IP addresses) poorly mixed.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

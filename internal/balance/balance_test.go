package balance

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var poolT0 = time.Unix(1_700_000_000, 0)

func newTestPool(balance Balance, weights ...int) (*Pool, []*Backend) {
	bs := make([]*Backend, len(weights))
	for i, w := range weights {
		bs[i] = NewBackend(fmt.Sprintf("ws://10.0.0.%d:9000/ws", i+1), w)
	}
	return NewPool(balance, bs), bs
}

// backendLetters renders candidates as letters: backend 0 is "A".
func backendLetters(bs, all []*Backend) string {
	var sb strings.Builder
	for _, b := range bs {
		sb.WriteByte(byte('A' + slices.Index(all, b)))
	}
	return sb.String()
}

func firstPick(t *testing.T, p *Pool, client string, now time.Time) *Backend {
	t.Helper()
	c := p.Candidates(nil, client, now, 1)
	if len(c) != 1 {
		t.Fatalf("Candidates returned %d backends, want 1", len(c))
	}
	return c[0]
}

func TestPoolParseBalance(t *testing.T) {
	t.Parallel()
	// docs/operations.md "Config files and validation": "balance: round_robin # round_robin | least_conn | ip_hash".
	tests := []struct {
		in   string
		want Balance
		err  bool
	}{
		{"round_robin", RoundRobin, false},
		{"", RoundRobin, false},
		{"least_conn", LeastConn, false},
		{"ip_hash", IPHash, false},
		{"Round_Robin", 0, true},
		{"random", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseBalance(tt.in)
		if (err != nil) != tt.err || (err == nil && got != tt.want) {
			t.Errorf("ParseBalance(%q) = %v, %v", tt.in, got, err)
		}
		if err == nil && tt.in != "" && got.String() != tt.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
}

func TestPoolNewBackendWeight(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want int }{{0, 1}, {-3, 1}, {1, 1}, {7, 7}, {MaxWeight, MaxWeight}, {1 << 40, MaxWeight}} {
		if got := NewBackend("k", tt.in).Weight; got != tt.want {
			t.Errorf("NewBackend weight %d = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestPoolRoundRobinSmooth: weighted picks interleave, nginx-style.
func TestPoolRoundRobinSmooth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		weights []int
		want    string
	}{
		{[]int{1}, "AAA"},
		{[]int{1, 1, 1}, "ABCABC"},
		{[]int{1, 2}, "BABBAB"},
		{[]int{2, 4}, "BABBAB"}, // divided by the gcd: same cycle as 1, 2
		{[]int{5, 1, 1}, "AABACAAAABACAA"},
		{[]int{3, 1}, "AABAAABA"},
	}
	for _, tt := range tests {
		p, bs := newTestPool(RoundRobin, tt.weights...)
		var got []*Backend
		for range len(tt.want) {
			got = append(got, firstPick(t, p, "", poolT0))
		}
		if s := backendLetters(got, bs); s != tt.want {
			t.Errorf("weights %v: picks %s, want %s", tt.weights, s, tt.want)
		}
	}
}

// TestPoolRoundRobinProportions: over whole cycles the split is exactly the
// weights, also with many goroutines picking at once.
func TestPoolRoundRobinProportions(t *testing.T) {
	t.Parallel()
	weights := []int{1, 2, 3, 4}
	p, bs := newTestPool(RoundRobin, weights...)
	const workers, picks = 8, 3000 // 8*3000 is a multiple of the cycle (10)
	counts := make([][]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		counts[w] = make([]int, len(bs))
		wg.Go(func() {
			dst := make([]*Backend, 0, 3)
			for range picks {
				dst = p.Candidates(dst, "", poolT0, 3)
				counts[w][slices.Index(bs, dst[0])]++
			}
		})
	}
	wg.Wait()
	total := make([]int, len(bs))
	for _, c := range counts {
		for i, n := range c {
			total[i] += n
		}
	}
	for i, w := range weights {
		if want := workers * picks * w / 10; total[i] != want {
			t.Errorf("backend %d (weight %d): %d picks, want %d", i, w, total[i], want)
		}
	}
}

// TestPoolCandidatesOrder: the balancer's choice first, then its next ones,
// distinct, at most n, at most each backend once.
func TestPoolCandidatesOrder(t *testing.T) {
	t.Parallel()
	p, bs := newTestPool(RoundRobin, 1, 1, 1)
	for _, want := range []string{"ABC", "BCA", "CAB", "ABC"} {
		if got := backendLetters(p.Candidates(nil, "", poolT0, 3), bs); got != want {
			t.Errorf("Candidates = %s, want %s", got, want)
		}
	}
	// n larger than the pool: each backend once.
	if got := p.Candidates(nil, "", poolT0, 10); len(got) != 3 || len(slices.Compact(slices.SortedFunc(slices.Values(got), cmpBackendKey))) != 3 {
		t.Errorf("n=10 on 3 backends: %s", backendLetters(got, bs))
	}
	if got := p.Candidates(nil, "", poolT0, 0); len(got) != 0 {
		t.Errorf("n=0: %s", backendLetters(got, bs))
	}
	// Weighted: the heavy backend appears once, not twice.
	pw, bw := newTestPool(RoundRobin, 1, 5)
	for range 12 {
		got := pw.Candidates(nil, "", poolT0, 3)
		if len(got) != 2 || got[0] == got[1] {
			t.Fatalf("weighted candidates %s", backendLetters(got, bw))
		}
	}
	empty := NewPool(RoundRobin, nil)
	if got := empty.Candidates(nil, "", poolT0, 3); len(got) != 0 {
		t.Errorf("empty pool returned %d", len(got))
	}
}

func cmpBackendKey(a, b *Backend) int { return strings.Compare(a.Key, b.Key) }

// TestPoolPassiveHealth: a failed upstream dial is retried on the next
// upstream of the route before answering 502, and marks that upstream down
// for a short back-off (docs/handshake.md "Dialling the upstream").
func TestPoolPassiveHealth(t *testing.T) {
	t.Parallel()
	for _, balance := range []Balance{RoundRobin, LeastConn, IPHash} {
		t.Run(balance.String(), func(t *testing.T) {
			p, bs := newTestPool(balance, 1, 1, 1)
			a := bs[0]
			p.Failed(a, poolT0)
			at := func(d time.Duration) time.Time { return poolT0.Add(d) }
			// During the back-off A is never first, and comes last.
			for i := range 30 {
				c := p.Candidates(nil, fmt.Sprint("10.1.1.", i), at(999*time.Millisecond), 3)
				if len(c) != 3 || c[2] != a {
					t.Fatalf("during back-off: %s, want A last", backendLetters(c, bs))
				}
				if c := p.Candidates(nil, "", at(500*time.Millisecond), 2); slices.Contains(c, a) {
					t.Fatalf("during back-off with n=2: %s contains A", backendLetters(c, bs))
				}
			}
			// After it, A is back in the rotation.
			if !a.Up(at(time.Second)) || a.Up(at(999*time.Millisecond)) {
				t.Fatal("first back-off is not 1s")
			}
			seen := false
			for i := range 30 {
				c := p.Candidates(nil, fmt.Sprint("10.1.1.", i), at(time.Second), 3)
				seen = seen || c[0] == a
			}
			if !seen {
				t.Error("A never first after its back-off")
			}
		})
	}
}

// TestPoolBackoffGrowth: 1s, 2s, 4s … 30s; a failure reported during a
// back-off does not lengthen it; Succeeded starts over.
func TestPoolBackoffGrowth(t *testing.T) {
	t.Parallel()
	p, bs := newTestPool(RoundRobin, 1)
	b := bs[0]
	now := poolT0
	for _, want := range []time.Duration{1, 2, 4, 8, 16, 30, 30, 30} {
		want *= time.Second
		p.Failed(b, now)
		p.Failed(b, now.Add(want/2)) // same outage, seen by a later attempt
		if b.Up(now.Add(want - 1)) {
			t.Fatalf("up before the %v back-off ended", want)
		}
		if !b.Up(now.Add(want)) {
			t.Fatalf("still down after the %v back-off", want)
		}
		now = now.Add(want)
	}
	p.Succeeded(b)
	if !b.Up(now) {
		t.Fatal("down after Succeeded")
	}
	p.Failed(b, now)
	if !b.Up(now.Add(time.Second)) {
		t.Fatal("back-off after Succeeded is not 1s again")
	}
	// Succeeded during a back-off ends it.
	p.Failed(b, now.Add(time.Second))
	p.Succeeded(b)
	if !b.Up(now.Add(time.Second)) {
		t.Fatal("Succeeded did not end the back-off")
	}
}

// TestPoolAllDown: "if all are backing off, try the one whose back-off ends
// first" — then the others, by back-off end.
func TestPoolAllDown(t *testing.T) {
	t.Parallel()
	for _, balance := range []Balance{RoundRobin, LeastConn, IPHash} {
		t.Run(balance.String(), func(t *testing.T) {
			p, bs := newTestPool(balance, 1, 1, 1, 1)
			a, b, c, d := bs[0], bs[1], bs[2], bs[3]
			ms := func(n int) time.Time { return poolT0.Add(time.Duration(n) * time.Millisecond) }
			p.Failed(b, ms(0))    // B: 1st failure, down until 1000
			p.Failed(b, ms(1000)) // B: 2nd failure, down until 3000
			p.Failed(a, ms(100))  // A: down until 1100
			p.Failed(c, ms(50))   // C: down until 1050
			p.Failed(d, ms(1500)) // D: down until 2500
			now := ms(1600)       // A and C are up again
			got := p.Candidates(nil, "10.0.0.9", now, 4)
			if len(got) != 4 || !slices.Contains(got[:2], a) || !slices.Contains(got[:2], c) || backendLetters(got[2:], bs) != "DB" {
				t.Errorf("up ones, then D (2500), then B (3000): got %s", backendLetters(got, bs))
			}
			// Now everything backs off: earliest end first, ties in
			// configuration order.
			p.Failed(a, now) // A: 2nd failure, down until 3600
			p.Failed(c, now) // C: 2nd failure, down until 3600
			if got := backendLetters(p.Candidates(nil, "10.0.0.9", now, 3), bs); got != "DBA" {
				t.Errorf("all down, n=3: %s, want DBA", got)
			}
			if got := backendLetters(p.Candidates(nil, "10.0.0.9", now, 9), bs); got != "DBAC" {
				t.Errorf("all down, n=9: %s, want DBAC", got)
			}
		})
	}
}

// TestPoolDrained: a drained upstream "leaves the rotation" (docs/relay.md "Reload
// without dropping sessions") and is never returned, not even as a last
// resort.
func TestPoolDrained(t *testing.T) {
	t.Parallel()
	for _, balance := range []Balance{RoundRobin, LeastConn, IPHash} {
		t.Run(balance.String(), func(t *testing.T) {
			p, bs := newTestPool(balance, 1, 3, 1)
			bs[1].SetDrained(true)
			if !bs[1].Drained() || bs[1].Up(poolT0) {
				t.Fatal("drained backend reports up")
			}
			for i := range 50 {
				c := p.Candidates(nil, fmt.Sprint("192.0.2.", i), poolT0, 3)
				if len(c) != 2 || slices.Contains(c, bs[1]) {
					t.Fatalf("drained: %s", backendLetters(c, bs))
				}
			}
			p.Failed(bs[0], poolT0)
			p.Failed(bs[2], poolT0)
			if c := p.Candidates(nil, "192.0.2.1", poolT0, 3); len(c) != 2 || slices.Contains(c, bs[1]) {
				t.Fatalf("others down: %s", backendLetters(c, bs))
			}
			bs[0].SetDrained(true)
			bs[2].SetDrained(true)
			if c := p.Candidates(nil, "192.0.2.1", poolT0, 3); len(c) != 0 {
				t.Fatalf("all drained: %s", backendLetters(c, bs))
			}
			bs[1].SetDrained(false)
			if c := p.Candidates(nil, "192.0.2.1", poolT0, 3); backendLetters(c, bs) != "B" {
				t.Fatalf("undrained: %s", backendLetters(c, bs))
			}
		})
	}
}

func TestPoolLeastConn(t *testing.T) {
	t.Parallel()
	p, bs := newTestPool(LeastConn, 1, 1, 1)
	acquire := func(b *Backend, n int) {
		for range n {
			b.Acquire()
		}
	}
	acquire(bs[0], 3)
	acquire(bs[1], 1)
	acquire(bs[2], 2)
	if got := backendLetters(p.Candidates(nil, "", poolT0, 3), bs); got != "BCA" {
		t.Errorf("least loaded first: %s, want BCA", got)
	}
	bs[0].Release()
	bs[0].Release()
	if got := bs[0].Active(); got != 1 {
		t.Fatalf("Active = %d", got)
	}

	// Per unit of weight: A has 3 on weight 2 (1.5), B 1 on weight 1.
	pw, bw := newTestPool(LeastConn, 2, 1)
	acquire(bw[0], 3)
	acquire(bw[1], 1)
	if got := backendLetters(pw.Candidates(nil, "", poolT0, 2), bw); got != "BA" {
		t.Errorf("weighted: %s, want BA", got)
	}
	bw[0].Release() // A: 2/2 = B: 1/1, a tie; both must come first sometimes
	firsts := map[*Backend]int{}
	for range 100 {
		firsts[firstPick(t, pw, "", poolT0)]++
	}
	if firsts[bw[0]] != 50 || firsts[bw[1]] != 50 {
		t.Errorf("weighted tie: %d/%d", firsts[bw[0]], firsts[bw[1]])
	}

	// Ties take turns, so equal idle backends share load.
	pt, bt := newTestPool(LeastConn, 1, 1, 1, 1)
	counts := map[*Backend]int{}
	for range 400 {
		counts[firstPick(t, pt, "", poolT0)]++
	}
	for _, b := range bt {
		if counts[b] != 100 {
			t.Errorf("idle ties: %v got %d of 400", b.Key, counts[b])
		}
	}
	// Sessions that stay open: picks stay level.
	for range 400 {
		firstPick(t, pt, "", poolT0).Acquire()
	}
	for _, b := range bt {
		if b.Active() != 100 {
			t.Errorf("open sessions: %v has %d of 400", b.Key, b.Active())
		}
	}
}

func TestPoolLeastConnConcurrent(t *testing.T) {
	t.Parallel()
	p, bs := newTestPool(LeastConn, 1, 2, 1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			dst := make([]*Backend, 0, 3)
			for i := range 2000 {
				dst = p.Candidates(dst, "", poolT0, 3)
				b := dst[0]
				b.Acquire()
				if i%7 == 0 {
					p.Failed(b, poolT0)
					p.Succeeded(b)
				}
				b.Release()
			}
		})
	}
	wg.Wait()
	for _, b := range bs {
		if b.Active() != 0 {
			t.Errorf("%s: Active = %d after all releases", b.Key, b.Active())
		}
	}
}

// TestPoolIPHashStable: the same client gets the same backend, in this pool,
// in another pool built from the same config (another process), and when the
// list is reordered.
func TestPoolIPHashStable(t *testing.T) {
	t.Parallel()
	p1, _ := newTestPool(IPHash, 1, 2, 1, 3)
	p2, b2 := newTestPool(IPHash, 1, 2, 1, 3)
	rev := slices.Clone(b2)
	slices.Reverse(rev)
	p3 := NewPool(IPHash, rev)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		ip := poolRandomIP(rng)
		want := firstPick(t, p1, ip, poolT0)
		for range 3 {
			if got := firstPick(t, p1, ip, poolT0); got != want {
				t.Fatalf("%s: %s then %s", ip, want.Key, got.Key)
			}
		}
		if got := firstPick(t, p2, ip, poolT0); got.Key != want.Key {
			t.Fatalf("%s: pool 1 %s, pool 2 %s", ip, want.Key, got.Key)
		}
		if got := firstPick(t, p3, ip, poolT0); got.Key != want.Key {
			t.Fatalf("%s: reordered pool gives %s, want %s", ip, got.Key, want.Key)
		}
	}
}

// TestPoolIPHashGolden pins the hash: changing it would move every client to
// another upstream when the gateway is upgraded.
func TestPoolIPHashGolden(t *testing.T) {
	t.Parallel()
	p, bs := newTestPool(IPHash, 1, 1, 1, 1)
	var sb strings.Builder
	for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.7", "2001:db8::1", "2001:db8::2", "10.0.0.1", "", "127.0.0.1", "203.0.113.200"} {
		sb.WriteString(backendLetters(p.Candidates(nil, ip, poolT0, 4), bs))
		sb.WriteByte(' ')
	}
	const want = "ADBC BADC BCAD ADCB ACBD BDCA CABD CDAB ABDC CDBA "
	if got := sb.String(); got != want {
		t.Errorf("ip_hash orders changed:\n got %q\nwant %q", got, want)
	}
}

// TestPoolIPHashSpread: random clients spread in proportion to the weights.
func TestPoolIPHashSpread(t *testing.T) {
	t.Parallel()
	weights := []int{1, 1, 2, 4}
	p, bs := newTestPool(IPHash, weights...)
	rng := rand.New(rand.NewPCG(3, 4))
	const clients = 8000
	counts := make([]int, len(bs))
	for range clients {
		counts[slices.Index(bs, firstPick(t, p, poolRandomIP(rng), poolT0))]++
	}
	for i, w := range weights {
		want := float64(clients*w) / 8
		if got := float64(counts[i]); got < want*0.85 || got > want*1.15 {
			t.Errorf("backend %d (weight %d): %v clients, want %v ±15%%", i, w, got, want)
		}
	}
}

// TestPoolIPHashFailover: when a backend is down only its clients move, they
// spread over the others, and they come back with it.
func TestPoolIPHashFailover(t *testing.T) {
	t.Parallel()
	p, bs := newTestPool(IPHash, 1, 1, 1, 1)
	rng := rand.New(rand.NewPCG(5, 6))
	ips := make([]string, 2000)
	before := make([]*Backend, len(ips))
	for i := range ips {
		ips[i] = poolRandomIP(rng)
		before[i] = firstPick(t, p, ips[i], poolT0)
	}
	down := bs[1]
	p.Failed(down, poolT0)
	moved := map[*Backend]int{}
	for i, ip := range ips {
		c := p.Candidates(nil, ip, poolT0, 4)
		got := c[0]
		switch {
		case before[i] == down:
			moved[got]++
			if c[3] != down {
				t.Fatalf("%s: down backend not last: %s", ip, backendLetters(c, bs))
			}
		case got != before[i]:
			t.Fatalf("%s moved from %s to %s though its backend is up", ip, before[i].Key, got.Key)
		}
	}
	for _, b := range bs {
		if b != down && moved[b] < 100 {
			t.Errorf("%s took only %d of the moved clients", b.Key, moved[b])
		}
	}
	back := poolT0.Add(time.Second)
	for i, ip := range ips {
		if got := firstPick(t, p, ip, back); got != before[i] {
			t.Fatalf("%s did not return to %s after the back-off", ip, before[i].Key)
		}
	}
}

func poolRandomIP(rng *rand.Rand) string {
	if rng.IntN(4) == 0 {
		var a [16]byte
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		return netip.AddrFrom16(a).String()
	}
	return netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}).String()
}

func TestPoolCandidatesAllocs(t *testing.T) {
	for _, balance := range []Balance{RoundRobin, LeastConn, IPHash} {
		p, bs := newTestPool(balance, 1, 2, 3, 1, 1)
		p.Failed(bs[2], poolT0) // exercise the back-off path too
		dst := make([]*Backend, 0, 3)
		n := testing.AllocsPerRun(200, func() {
			dst = p.Candidates(dst, "198.51.100.23", poolT0, 3)
		})
		if n != 0 {
			t.Errorf("%v: %v allocations per Candidates, want 0", balance, n)
		}
	}
}

func BenchmarkPoolCandidates(b *testing.B) {
	for _, balance := range []Balance{RoundRobin, LeastConn, IPHash} {
		b.Run(balance.String(), func(b *testing.B) {
			p, bs := newTestPool(balance, 1, 2, 3, 1, 1, 2, 1, 1)
			p.Failed(bs[2], poolT0)
			dst := make([]*Backend, 0, 3)
			b.ReportAllocs()
			for b.Loop() {
				dst = p.Candidates(dst, "198.51.100.23", poolT0, 3)
			}
		})
	}
	b.Run("round_robin/parallel", func(b *testing.B) {
		p, _ := newTestPool(RoundRobin, 1, 2, 3, 1)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			dst := make([]*Backend, 0, 3)
			for pb.Next() {
				dst = p.Candidates(dst, "", poolT0, 3)
			}
		})
	})
}

func ExamplePool_Candidates() {
	a := NewBackend("ws://10.0.0.1:9001/ws", 1)
	b := NewBackend("ws://10.0.0.2:9001/ws", 2)
	p := NewPool(RoundRobin, []*Backend{a, b})
	now := time.Unix(1_700_000_000, 0)
	dst := make([]*Backend, 0, 3) // reused: no allocation per handshake

	for range 3 {
		dst = p.Candidates(dst, "192.0.2.7", now, 3)
		fmt.Println(dst[0].Key, len(dst))
	}

	p.Failed(b, now) // the dial to b was refused: b backs off for 1s
	dst = p.Candidates(dst, "192.0.2.7", now, 3)
	fmt.Println(dst[0].Key, dst[1].Key) // b still comes last, as a last resort
	fmt.Println(b.Up(now.Add(time.Second)))
	// Output:
	// ws://10.0.0.2:9001/ws 2
	// ws://10.0.0.1:9001/ws 2
	// ws://10.0.0.2:9001/ws 2
	// ws://10.0.0.1:9001/ws ws://10.0.0.2:9001/ws
	// true
}

func TestPoolUnknownBalance(t *testing.T) {
	t.Parallel()
	p, _ := newTestPool(Balance(42), 1, 2)
	if got := p.Candidates(nil, "", poolT0, 3); len(got) != 2 {
		t.Errorf("unknown balance: %d candidates, want 2 (round robin)", len(got))
	}
	if s := Balance(42).String(); s != "Balance(42)" {
		t.Errorf("String = %q", s)
	}
}

// TestSticky: values are opaque, stable for the same secret and Key (other
// processes, restarts), different under another secret, and only values
// handed out are found.
func TestSticky(t *testing.T) {
	a, b := NewBackend("http://10.0.0.5:3000", 1), NewBackend("ws://10.0.0.6:3000", 1)
	s := NewSticky([]byte("route app"), []*Backend{a, b})
	va, vb := s.Value(a), s.Value(b)
	if va == "" || vb == "" || va == vb {
		t.Fatalf("values %q %q", va, vb)
	}
	for _, v := range []string{va, vb} {
		if len(v) != stickyValueLen || strings.Contains(v, "10.0.0") || strings.ContainsAny(v, ";, =\"") {
			t.Errorf("value %q: want 22 base64url characters that do not reveal the address", v)
		}
	}
	if s.Lookup(va) != a || s.Lookup(vb) != b {
		t.Error("Lookup does not find the backends")
	}
	// Another process with the same config: same values for new Backends.
	a2, b2 := NewBackend(a.Key, 1), NewBackend(b.Key, 1)
	s2 := NewSticky([]byte("route app"), []*Backend{b2, a2})
	if s2.Value(a2) != va || s2.Value(b2) != vb {
		t.Error("values change with the process or the order of upstreams")
	}
	// Another secret: other values.
	if s3 := NewSticky([]byte("route other"), []*Backend{a}); s3.Value(a) == va {
		t.Error("the secret does not change the value")
	}
	for _, v := range []string{"", "x", va[:21], va + "A", "10.0.0.5:3000", strings.ToUpper(va)} {
		if v != va && v != vb && s.Lookup(v) != nil {
			t.Errorf("Lookup(%q) found a backend", v)
		}
	}
}

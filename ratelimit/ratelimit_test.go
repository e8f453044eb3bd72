package ratelimit

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestKeyFoldsIPv6To64(t *testing.T) {
	cases := []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"},
	}
	for _, c := range cases {
		if got := Key(addr(c.in)); got != addr(c.want) {
			t.Errorf("Key(%s) = %s, want %s", c.in, got, c.want)
		}
	}
	if Key(addr("2001:db8:1:2::1")) == Key(addr("2001:db8:1:3::1")) {
		t.Error("different /64s share a key")
	}
}

func TestKeyedBurstThenRate(t *testing.T) {
	k := NewKeyed(2, 3, 1000) // 2/s, burst 3
	a := addr("192.0.2.1")
	for i := 0; i < 3; i++ {
		if ok, _ := k.AllowN(a, t0, 1); !ok {
			t.Fatalf("burst token %d refused", i)
		}
	}
	ok, retry := k.AllowN(a, t0, 1)
	if ok {
		t.Fatal("fourth token at t0 allowed")
	}
	if retry != 500*time.Millisecond {
		t.Fatalf("retry = %v, want 500ms (one token at 2/s)", retry)
	}
	// The refusal took nothing: exactly at t0+retry a token is there.
	if ok, _ := k.AllowN(a, t0.Add(retry), 1); !ok {
		t.Fatal("token not available after the advertised retry")
	}
	// Another key is independent.
	if ok, _ := k.AllowN(addr("192.0.2.2"), t0, 3); !ok {
		t.Fatal("independent key refused")
	}
	// More than the burst can never pass.
	if ok, retry := k.AllowN(addr("192.0.2.3"), t0, 4); ok || retry != 0 {
		t.Fatalf("n > burst: ok=%v retry=%v", ok, retry)
	}
}

func TestKeyedMemoryBoundedUnderKeyRotation(t *testing.T) {
	const maxKeys = 1024
	k := NewKeyed(1, 1, maxKeys)
	now := t0
	for i := 0; i < 200_000; i++ {
		var b [4]byte
		b[0], b[1], b[2], b[3] = 10, byte(i>>16), byte(i>>8), byte(i)
		k.AllowN(netip.AddrFrom4(b), now, 1)
		now = now.Add(time.Microsecond)
	}
	if n := k.Len(); n > maxKeys+shards {
		t.Fatalf("%d keys held, cap %d", n, maxKeys)
	}
}

func TestKeyedEvictionSparesLimitedKey(t *testing.T) {
	// An attacker rotating through addresses must not be able to push out
	// the empty bucket of an address that is over its limit (which would
	// hand it a fresh burst): eviction takes the fullest sampled bucket.
	k := NewKeyed(1, 10, shards*4) // 4 keys per shard: every shard fills fast
	victim := addr("192.0.2.99")
	for i := 0; i < 10; i++ {
		if ok, _ := k.AllowN(victim, t0, 1); !ok {
			t.Fatalf("burst token %d refused", i)
		}
	}
	for i := 0; i < 100_000; i++ {
		k.AllowN(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), t0, 1)
	}
	if ok, retry := k.AllowN(victim, t0, 1); ok || retry != time.Second {
		t.Fatalf("victim after the flood: ok=%v retry=%v, want refused for 1s", ok, retry)
	}
}

func TestKeyedSweepDropsOnlyFullBuckets(t *testing.T) {
	k := NewKeyed(1, 2, 1000)                                     // a bucket refills from empty in 2s
	k.AllowN(addr("192.0.2.1"), t0, 2)                            // empty at t0
	k.AllowN(addr("192.0.2.2"), t0.Add(1500*time.Millisecond), 2) // empty at t0+1.5s
	k.Sweep(t0.Add(2 * time.Second))
	if n := k.Len(); n != 1 {
		t.Fatalf("after sweep %d keys, want 1 (the one still refilling)", n)
	}
	// The survivor still has its state: 1/2 token back after 0.5s.
	if ok, _ := k.AllowN(addr("192.0.2.2"), t0.Add(2*time.Second), 1); ok {
		t.Fatal("sweep reset a bucket that was still refilling")
	}
}

func TestKeyedSweepsItself(t *testing.T) {
	k := NewKeyed(10, 1, 100_000)
	for i := 0; i < 10_000; i++ {
		k.AllowN(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), t0, 1)
	}
	// Once every bucket has refilled, calls that touch each shard drop
	// them: memory follows the active keys, not the cap.
	later := t0.Add(2 * time.Minute)
	for i := 0; i < 1000; i++ {
		k.AllowN(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), later, 0)
	}
	// What is left are (at most) the 1000 keys just added; the chance that
	// 1000 calls miss one of the 64 shards is about 1e-7.
	if n := k.Len(); n > 1000 {
		t.Fatalf("%d keys held after every bucket refilled", n)
	}
}

func TestKeyedRetryIsTheBucketsDelay(t *testing.T) {
	k := NewKeyed(rate.Every(time.Minute), 2, 1000) // 1/m, burst 2
	a := addr("2001:db8::1")
	k.AllowN(a, t0, 2)
	_, retry := k.AllowN(a, t0.Add(250*time.Millisecond), 1)
	if want := time.Minute - 250*time.Millisecond; retry != want {
		t.Fatalf("retry = %v, want %v", retry, want)
	}
	// Another address of the same /64 shares the bucket (callers key by
	// Key); a different /64 does not.
	if ok, _ := k.AllowN(Key(addr("2001:db8::2")), t0, 1); !ok {
		t.Fatal("unused key refused")
	}
}

// TestKeyedMillionAddresses pushes 1,000,000 distinct client addresses
// (half IPv4, half IPv6 /64s; 200,000 under -race) through a handshake-style limiter capped at
// 65,536 keys: the key count stays under the cap, the heap growth is
// reported, and a well-known address is limited correctly throughout.
func TestKeyedMillionAddresses(t *testing.T) {
	if testing.Short() {
		t.Skip("1M addresses")
	}
	const maxKeys = 1 << 16
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	k := NewKeyed(20, 40, maxKeys) // handshakes: {rate: 20/s, burst: 40}
	well := addr("198.51.100.7")
	for i := 0; i < 40; i++ {
		if ok, _ := k.AllowN(well, t0, 1); !ok {
			t.Fatalf("well-known address refused at token %d", i)
		}
	}
	now := t0
	for i := 0; i < millionAddresses; i++ {
		var a netip.Addr
		if i%2 == 0 {
			a = netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})
		} else {
			a = Key(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 0, 0, 0, 0, 0, 0, 0, 1}))
		}
		k.AllowN(a, now, 1)
		if i%(millionAddresses/10) == 0 {
			// The well-known address goes on using its tokens: still
			// limited, with the truthful delay.
			now = now.Add(time.Millisecond)
			if ok, _ := k.AllowN(well, now, 1); ok {
				t.Fatalf("well-known address allowed beyond its rate after %d addresses", i)
			}
		}
	}
	if n := k.Len(); n > k.MaxKeys() {
		t.Fatalf("%d keys held, cap %d", n, k.MaxKeys())
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
	t.Logf("%d addresses: %d keys held (cap %d), heap +%.1f MiB (%.0f B/key)", millionAddresses, k.Len(), k.MaxKeys(), grown, grown*(1<<20)/float64(k.Len()))
	if grown > 20 {
		t.Errorf("limiter holds %.1f MiB, want under 20 MiB for %d keys", grown, maxKeys)
	}
	// Still limited at the rate: 10ms have passed, so 0.2 tokens are back
	// and the next one is 40ms away.
	ok, retry := k.AllowN(well, now, 1)
	if ok || retry <= 0 || retry > 50*time.Millisecond || retry < 40*time.Millisecond {
		t.Fatalf("well-known address: ok=%v retry=%v", ok, retry)
	}
	if ok, _ := k.AllowN(well, now.Add(retry), 1); !ok {
		t.Fatal("token not there after the advertised retry")
	}
	if ok, _ := k.AllowN(well, now.Add(retry), 1); ok {
		t.Fatal("second token allowed at once")
	}
	runtime.KeepAlive(k)
}

func TestKeyedConcurrent(t *testing.T) {
	k := NewKeyed(1000, 1, 1000)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				k.AllowN(netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)}), t0, 1)
			}
		}(g)
	}
	wg.Wait()
	if k.Len() > 1000+shards {
		t.Fatalf("cap exceeded: %d", k.Len())
	}
}

func TestCounter(t *testing.T) {
	var c Counter
	a, b := addr("192.0.2.1"), addr("2001:db8::1")
	for i := 0; i < 2; i++ {
		if !c.Acquire(a, 2) {
			t.Fatalf("acquire %d refused", i)
		}
	}
	if c.Acquire(a, 2) {
		t.Fatal("third holder allowed with max 2")
	}
	if !c.Acquire(b, 2) {
		t.Fatal("other key refused")
	}
	c.Release(a)
	if !c.Acquire(a, 2) {
		t.Fatal("acquire after release refused")
	}
	c.Release(a)
	c.Release(a)
	c.Release(b)
	if c.Count(a) != 0 || c.Count(b) != 0 {
		t.Fatal("counts not back to zero")
	}
	for i := range c.shards {
		if len(c.shards[i].m) != 0 {
			t.Fatal("released keys still held")
		}
	}
	if !c.Acquire(a, 0) || !c.Acquire(a, 0) {
		t.Fatal("max 0 must mean unlimited")
	}
}

// BenchmarkKeyedAllowParallel is the hot path: many goroutines taking tokens
// for a working set of 65,536 addresses that the limiter already holds.
func BenchmarkKeyedAllowParallel(b *testing.B) {
	k := NewKeyed(1e9, 1<<30, 100_000)
	now := time.Now()
	for i := 0; i < 1<<16; i++ {
		k.AllowN(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Uint32
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			k.AllowN(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now, 1)
			i++
		}
	})
}

// BenchmarkKeyedRotatingParallel is an address-rotation flood: every call is
// a new key, so every call evicts (the limiter is at its cap).
func BenchmarkKeyedRotatingParallel(b *testing.B) {
	k := NewKeyed(1e6, 1, 10_000)
	var next atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		base := next.Add(1) << 24
		now := time.Now()
		for i := uint32(0); pb.Next(); i++ {
			now = now.Add(time.Microsecond) // each bucket is full again 1µs later
			v := base | i&0xffffff
			k.AllowN(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), now, 1)
		}
	})
}

func ExampleKeyed() {
	// handshakes: {rate: 1/s, burst: 2} for each client address.
	k := NewKeyed(1, 2, 100_000)
	client := Key(netip.MustParseAddr("2001:db8:1:2::77")) // its /64
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		ok, retry := k.AllowN(client, now, 1)
		fmt.Println(ok, retry)
	}
	// Output:
	// true 0s
	// true 0s
	// false 1s
}

package ratelimit

import (
	"net/netip"
	"sync"
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

func TestKeyedEvictionSparesRecentKey(t *testing.T) {
	// A key in active use keeps its (empty) bucket while a flood of new keys
	// passes: an attacker cannot reset a victim's limit by rotating addresses
	// faster than the victim uses it... as long as the victim is more recent
	// than most of the sampled keys.
	k := NewKeyed(1, 1, shards) // one key per shard: worst case
	victim := addr("192.0.2.99")
	now := t0
	if ok, _ := k.AllowN(victim, now, 1); !ok {
		t.Fatal("first token refused")
	}
	// Fill the victim's shard with one older key: the victim is the newest,
	// so when the shard is full the older key goes first.
	s := &k.shards[shardOf(victim)]
	if len(s.m) != 1 {
		t.Fatalf("shard holds %d keys", len(s.m))
	}
	if ok, _ := k.AllowN(victim, now.Add(time.Millisecond), 1); ok {
		t.Fatal("victim's bucket was refilled")
	}
}

func TestKeyedSweep(t *testing.T) {
	k := NewKeyed(1, 1, 1000)
	k.AllowN(addr("192.0.2.1"), t0, 1)
	k.AllowN(addr("192.0.2.2"), t0.Add(time.Minute), 1)
	k.Sweep(t0.Add(30 * time.Second))
	if n := k.Len(); n != 1 {
		t.Fatalf("after sweep %d keys, want 1", n)
	}
}

func TestKeyedConcurrent(t *testing.T) {
	k := NewKeyed(rate.Inf, 1, 1000)
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

func BenchmarkKeyedAllowParallel(b *testing.B) {
	k := NewKeyed(rate.Inf, 1, 100_000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		now := time.Now()
		for pb.Next() {
			k.AllowN(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now, 1)
			i++
		}
	})
}

package ratelimit

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestKeyedShared(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	k := NewKeyed(10, 5, 1024)
	k.Track()
	now := time.Unix(1000, 0)
	for range 3 {
		if ok, _ := k.AllowN(a, now, 1); !ok {
			t.Fatal("a refused within its burst")
		}
	}
	k.AllowN(b, now, 2)
	used := k.TakeUsed(nil, 100)
	slices.SortFunc(used, func(x, y Used) int { return x.Key.Compare(y.Key) })
	if want := []Used{{a, 3}, {b, 2}}; !slices.Equal(used, want) {
		t.Fatalf("TakeUsed = %v, want %v", used, want)
	}
	if used := k.TakeUsed(nil, 100); len(used) != 0 {
		t.Fatalf("second TakeUsed = %v, want nothing", used)
	}

	// Another process took the rest and 10 more: a debt of 10 tokens,
	// one second at 10/s, before a gets one again.
	k.AllowN(a, now, 1) // taken after the exchange: not in the level yet
	k.SetLevel(a, now, -9)
	if got := k.Tokens(a, now); got != -10 {
		t.Fatalf("tokens after SetLevel(-9) with 1 unreported = %v, want -10", got)
	}
	ok, retry := k.AllowN(a, now, 1)
	if ok || retry != 1100*time.Millisecond {
		t.Fatalf("AllowN in debt = %v, %v; want false, 1.1s", ok, retry)
	}
	if ok, _ := k.AllowN(a, now.Add(1100*time.Millisecond), 1); !ok {
		t.Fatal("a still refused once the debt is paid")
	}

	// A level at the burst forgets the key.
	k.TakeUsed(nil, 100)
	k.SetLevel(b, now, 5)
	if k.Tokens(b, now) != 5 || k.Len() != 1 {
		t.Fatalf("b kept after a full level: tokens %v, %d keys", k.Tokens(b, now), k.Len())
	}
	// The debt is bounded: 64 bursts.
	k.SetLevel(b, now, -1e12)
	if got := k.Tokens(b, now); got != -320 {
		t.Fatalf("tokens after a huge debt = %v, want -320", got)
	}
	// TakeUsed stops at max and keeps the rest.
	for i := range 10 {
		k.AllowN(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), now.Add(time.Hour), 1)
	}
	if n := len(k.TakeUsed(nil, 4)); n != 4 {
		t.Fatalf("TakeUsed(max 4) = %d keys", n)
	}
	if n := len(k.TakeUsed(nil, 100)); n != 6 {
		t.Fatalf("then %d keys, want the other 6", n)
	}
}

func TestKeyedUntracked(t *testing.T) {
	k := NewKeyed(10, 5, 1024)
	k.AllowN(netip.MustParseAddr("192.0.2.1"), time.Unix(1000, 0), 1)
	if used := k.TakeUsed(nil, 100); len(used) != 0 {
		t.Fatalf("an untracked limiter reported %v", used)
	}
}

func TestCounterEach(t *testing.T) {
	var c Counter
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::")
	c.Acquire(a, 0)
	c.Acquire(a, 0)
	c.Acquire(b, 0)
	got := map[netip.Addr]int{}
	c.Each(func(k netip.Addr, n int) { got[k] = n })
	if len(got) != 2 || got[a] != 2 || got[b] != 1 {
		t.Fatalf("Each = %v", got)
	}
}

package frame_test

import (
	"sync"
	"testing"

	"wsgate/frame"
)

// §5.3 and §10.3: masking keys must be unpredictable. A statistical test
// cannot prove that, but it catches a constant, a counter that repeats, or
// bytes that never change.
func TestNewKeyDistinct(t *testing.T) {
	t.Parallel()
	const n = 10000
	seen := make(map[[4]byte]int, n)
	var ones [32]int
	for range n {
		k := frame.NewKey()
		seen[k]++
		v := uint32(k[0]) | uint32(k[1])<<8 | uint32(k[2])<<16 | uint32(k[3])<<24
		for b := range 32 {
			ones[b] += int(v >> b & 1)
		}
	}
	// 10,000 draws from 2^32 values collide with probability about 1%;
	// five collisions mean the generator is broken.
	if dups := n - len(seen); dups > 5 {
		t.Errorf("%d duplicate keys in %d", dups, n)
	}
	if len(seen) == 1 {
		t.Fatal("every key is the same")
	}
	// Each bit is set in about half the keys (σ = 50; 1000 is 20σ).
	for b, c := range ones {
		if c < n/2-1000 || c > n/2+1000 {
			t.Errorf("key bit %d set in %d of %d keys", b, c, n)
		}
	}
}

// NewKey is called from every connection's writer at once; run with -race.
func TestNewKeyConcurrent(t *testing.T) {
	t.Parallel()
	const workers, each = 8, 2000
	keys := make([][][4]byte, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				keys[w] = append(keys[w], frame.NewKey())
			}
		})
	}
	wg.Wait()
	seen := make(map[[4]byte]bool, workers*each)
	for _, ks := range keys {
		for _, k := range ks {
			seen[k] = true
		}
	}
	// Generators seeded alike would repeat each other's keys wholesale.
	if dups := workers*each - len(seen); dups > 5 {
		t.Errorf("%d duplicate keys across %d goroutines", dups, workers)
	}
}

package frame_test

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"wsgate/frame"
)

var maskKeys = [][4]byte{
	rfcKey,
	{0x00, 0x00, 0x00, 0x00},
	{0xff, 0xff, 0xff, 0xff},
	{0x01, 0x02, 0x04, 0x80},
}

func maskLengths() []int {
	var ls []int
	for n := 0; n <= 100; n++ {
		ls = append(ls, n)
	}
	return append(ls, 127, 128, 255, 256, 1000, 4095, 4096, 4099, 65536+3)
}

// positions are payload offsets of a chunk: 0-3 and a few that only agree
// with them mod 4. math.MaxInt-1 (2 mod 4 for 32- and 64-bit int) compiles
// on 386, where 1<<40+2 overflowed, and makes pos+len(b) wrap.
var maskPositions = []int{0, 1, 2, 3, 4, 7, math.MaxInt - 1}

// §5.3: Mask agrees with the byte-at-a-time definition for every length,
// starting offset within the key and alignment of the slice in memory, and
// touches nothing outside the slice.
func TestMaskMatchesBytewise(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const guard = 16
	for _, key := range maskKeys {
		for _, n := range maskLengths() {
			src := make([]byte, n+2*guard)
			for i := range src {
				src[i] = byte(rng.Uint32())
			}
			for _, pos := range maskPositions {
				for align := range 8 {
					got := bytes.Clone(src)
					want := bytes.Clone(src)
					gp := frame.Mask(key, pos, got[align:align+n])
					wp := maskBytewise(key, pos, want[align:align+n])
					if gp != wp || !bytes.Equal(got, want) {
						t.Fatalf("§5.3 key=%x n=%d pos=%d align=%d: Mask returned %d (want %d), bytes differ: %v",
							key, n, pos, align, gp, wp, !bytes.Equal(got, want))
					}
				}
			}
		}
	}
}

// §5.3: a payload masked in chunks, passing on the returned position, equals
// the payload masked whole, for a split at every position.
func TestMaskChunked(t *testing.T) {
	t.Parallel()
	for _, key := range maskKeys {
		for _, n := range []int{0, 1, 2, 3, 5, 8, 9, 31, 32, 33, 64, 71, 100, 257} {
			whole := pattern(n)
			frame.Mask(key, 0, whole)
			for i := 0; i <= n; i++ {
				for _, start := range maskPositions {
					p := pattern(n)
					ref := pattern(n)
					maskBytewise(key, start, ref)
					pos := frame.Mask(key, start, p[:i])
					pos = frame.Mask(key, pos, p[i:])
					if !bytes.Equal(p, ref) || pos != (start+n)&3 {
						t.Fatalf("§5.3 key=%x n=%d split=%d start=%d: chunked result differs (pos %d)", key, n, i, start, pos)
					}
				}
			}
		}
	}
	// Many chunks of random sizes.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		key := [4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
		n := rng.IntN(3000)
		p, ref := pattern(n), pattern(n)
		maskBytewise(key, 0, ref)
		pos := 0
		for rest := p; len(rest) > 0; {
			c := min(len(rest), 1+rng.IntN(70))
			pos = frame.Mask(key, pos, rest[:c])
			rest = rest[c:]
		}
		if !bytes.Equal(p, ref) || pos != n&3 {
			t.Fatalf("§5.3 random chunks of %d bytes: result differs", n)
		}
	}
}

// §5.3: "The same algorithm applies regardless of the direction of the
// translation": masking twice is the identity.
func TestMaskInvolution(t *testing.T) {
	t.Parallel()
	for _, key := range maskKeys {
		for _, n := range maskLengths() {
			for _, pos := range maskPositions {
				p := pattern(n)
				frame.Mask(key, pos, p)
				frame.Mask(key, pos, p)
				if !bytes.Equal(p, pattern(n)) {
					t.Fatalf("key=%x n=%d pos=%d: Mask twice is not the identity", key, n, pos)
				}
			}
		}
	}
}

// Remask(from, to) equals unmasking with from, then masking with to, for
// every length, offset and alignment, whole and in chunks.
func TestRemask(t *testing.T) {
	t.Parallel()
	keys := append(maskKeys, [4]byte{0x9a, 0x00, 0xbc, 0x11})
	for fi, from := range keys {
		to := keys[(fi+1)%len(keys)]
		for _, n := range maskLengths() {
			src := pattern(n + 8)
			for _, pos := range maskPositions {
				for align := range 8 {
					got, want := bytes.Clone(src), bytes.Clone(src)
					gp := frame.Remask(from, to, pos, got[align:align+n])
					maskBytewise(from, pos, want[align:align+n])
					wp := maskBytewise(to, pos, want[align:align+n])
					if gp != wp || !bytes.Equal(got, want) {
						t.Fatalf("from=%x to=%x n=%d pos=%d align=%d: Remask differs", from, to, n, pos, align)
					}
				}
			}
			// Split at every position.
			if n > 100 {
				continue
			}
			want := bytes.Clone(src[:n])
			maskBytewise(from, 0, want)
			maskBytewise(to, 0, want)
			for i := 0; i <= n; i++ {
				got := bytes.Clone(src[:n])
				p := frame.Remask(from, to, 0, got[:i])
				frame.Remask(from, to, p, got[i:])
				if !bytes.Equal(got, want) {
					t.Fatalf("from=%x to=%x n=%d split=%d: chunked Remask differs", from, to, n, i)
				}
			}
		}
	}
}

func TestMaskRFCExample(t *testing.T) {
	t.Parallel()
	// §5.7: "Hello" masked with 37 fa 21 3d is 7f 9f 4d 51 58.
	for split := range 6 {
		p := []byte("Hello")
		pos := frame.Mask(rfcKey, 0, p[:split])
		frame.Mask(rfcKey, pos, p[split:])
		if got := fmt.Sprintf("% x", p); got != "7f 9f 4d 51 58" {
			t.Errorf("split %d: masked Hello = %s", split, got)
		}
	}
}

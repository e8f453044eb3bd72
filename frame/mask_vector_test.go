package frame

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// A maskImpl is Mask or one of the implementations behind it, with Mask's
// signature.
type maskImpl struct {
	name string
	fn   func(key [4]byte, pos int, b []byte) int
}

func unsafeData(b []byte) *byte { return unsafe.SliceData(b) }

// maskWith turns a function of a rotated key, like maskVector, into one
// with Mask's signature.
func maskWith(f func(k uint32, b []byte)) func([4]byte, int, []byte) int {
	return func(key [4]byte, pos int, b []byte) int {
		f(rotateKey(key, pos), b)
		return (pos + len(b)) & 3
	}
}

// maskImpls is Mask plus every vector implementation this CPU can run, called
// directly so that each sees every length, also those Mask keeps from it
// (on amd64, Mask is maskAsm, whose own code handles lengths under 64).
func maskImpls() []maskImpl {
	return append([]maskImpl{{"Mask", Mask}}, vectorImpls()...)
}

// checkMask masks b[off:off+n] of a copy of src with impl and with
// maskGeneric and fails t unless the results, returned positions included,
// agree; comparing all of src checks that nothing outside the slice changed.
func checkMask(t testing.TB, impl maskImpl, key [4]byte, pos int, src []byte, off, n int) {
	got, want := bytes.Clone(src), bytes.Clone(src)
	gp := impl.fn(key, pos, got[off:off+n:off+n])
	wp := maskGeneric(key, pos, want[off:off+n])
	if gp != wp || !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s key=%x pos=%d off=%d n=%d: returned %d (want %d), first differing byte at %d of %d (slice starts at %d)",
			impl.name, key, pos, off, n, gp, wp, i, len(src), off)
	}
}

// Every implementation agrees with maskGeneric for every length up to 300,
// every key offset and every alignment of the slice's start within 32 bytes,
// leaving the bytes around the slice alone.
func TestMaskVectorMatchesGeneric(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	const guard = 32
	// A 64-byte-aligned buffer, so that off is the alignment of the slice.
	raw := make([]byte, 300+2*guard+64)
	base := int(-uintptr(unsafe.Pointer(unsafe.SliceData(raw))) & 63)
	for _, impl := range maskImpls() {
		for n := 0; n <= 300; n++ {
			for pos := range 4 {
				key := [4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
				src := raw[base : base+n+2*guard]
				for i := range src {
					src[i] = byte(rng.Uint32())
				}
				for off := range 32 {
					checkMask(t, impl, key, pos, src, off, n)
				}
			}
		}
	}
}

// Large payloads, past the alignment prologue and many loop iterations.
func TestMaskVectorLarge(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	for _, impl := range maskImpls() {
		for _, n := range []int{64<<10 + 7, 1 << 20} {
			src := make([]byte, n+64)
			for i := range src {
				src[i] = byte(rng.Uint32())
			}
			for _, off := range []int{0, 1, 2, 3, 5, 15, 16, 17, 31, 32} {
				for pos := range 4 {
					key := [4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
					checkMask(t, impl, key, pos, src, off, n)
				}
			}
		}
	}
}

// FuzzMaskMatchesGeneric: every implementation, on a slice starting at any
// alignment, and Mask in two chunks split anywhere, agree with maskGeneric.
func FuzzMaskMatchesGeneric(f *testing.F) {
	for i, n := range []int{0, 1, 2, 3, 7, 15, 16, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300, 1000, 4099} {
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(j*7 + i)
		}
		f.Add(uint32(0x3d21fa37)+uint32(i), uint8(i), uint8(3*i), uint16(n/3), data)
	}
	impls := maskImpls()
	f.Fuzz(func(t *testing.T, k uint32, pos, off uint8, split uint16, data []byte) {
		key := [4]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)}
		o := int(off % 32)
		src := make([]byte, len(data)+64)
		copy(src[o:], data)
		for i := range o {
			src[i] = byte(k) + byte(i)
		}
		for _, impl := range impls {
			checkMask(t, impl, key, int(pos), src, o, len(data))
		}
		s := int(split) % (len(data) + 1)
		got, want := bytes.Clone(data), bytes.Clone(data)
		p := Mask(key, int(pos), got[:s])
		p = Mask(key, p, got[s:])
		wp := maskGeneric(key, int(pos), want)
		if p != wp || !bytes.Equal(got, want) {
			t.Fatalf("key=%x pos=%d n=%d split at %d: chunked Mask differs", key, pos, len(data), s)
		}
	})
}

// A nil or empty slice is fine and gives back pos mod 4.
func TestMaskVectorEmpty(t *testing.T) {
	for _, impl := range maskImpls() {
		for pos := range 8 {
			if got := impl.fn([4]byte{1, 2, 3, 4}, pos, nil); got != pos&3 {
				t.Errorf("%s(nil, pos %d) = %d", impl.name, pos, got)
			}
			if got := impl.fn([4]byte{1, 2, 3, 4}, pos, []byte{}); got != pos&3 {
				t.Errorf("%s([]byte{}, pos %d) = %d", impl.name, pos, got)
			}
		}
	}
}

// BenchmarkMaskVector runs each vector implementation directly, also on
// lengths Mask keeps from it, on a 64-byte-aligned slice and one a byte past.
func BenchmarkMaskVector(b *testing.B) {
	for _, n := range []int{16, 125, 1 << 10, 16 << 10, 64 << 10, 1 << 20} {
		for _, off := range []int{0, 1} {
			for _, impl := range append(vectorImpls(), maskImpl{"generic", maskGeneric}) {
				b.Run(fmt.Sprintf("n=%d/off=%d/%s", n, off, impl.name), func(b *testing.B) {
					raw := make([]byte, n+128)
					base := int(-uintptr(unsafe.Pointer(unsafe.SliceData(raw)))&63) + off
					p := raw[base : base+n]
					b.SetBytes(int64(n))
					for b.Loop() {
						impl.fn([4]byte{0x37, 0xfa, 0x21, 0x3d}, 1, p)
					}
				})
			}
		}
	}
}

package frame

import (
	"testing"

	"golang.org/x/sys/cpu"
)

// vectorImpls lists the assembly implementations this CPU can run, to test
// each against maskGeneric whichever one Mask picks.
func vectorImpls() []maskImpl {
	impls := []maskImpl{{"sse2", maskWith(func(k uint32, b []byte) { maskSSE2(unsafeData(b), len(b), k) })}}
	if cpu.X86.HasAVX2 {
		impls = append(impls, maskImpl{"avx2", maskWith(func(k uint32, b []byte) { maskAVX2(unsafeData(b), len(b), k) })})
	}
	return impls
}

// Mask (maskAsm) on a CPU without AVX2 jumps to the SSE2 code. Not parallel:
// it flips useAVX2, and parallel tests only resume after it has put it back.
func TestMaskWithoutAVX2(t *testing.T) {
	defer func(old bool) { useAVX2 = old }(useAVX2)
	useAVX2 = false
	src := make([]byte, 300+64)
	for i := range src {
		src[i] = byte(i*7 + 3)
	}
	for n := 0; n <= 300; n++ {
		for pos := range 4 {
			for _, off := range []int{0, 1, 7, 16, 31} {
				checkMask(t, maskImpl{"Mask (SSE2)", Mask}, [4]byte{0x37, 0xfa, 0x21, 0x3d}, pos, src, off, n)
			}
		}
	}
}

package frame

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// useAVX2 makes maskAsm use AVX2 rather than SSE2 (part of amd64) for
// payloads of 64 bytes or more. cpu.X86.HasAVX2 also checks that the OS
// saves the YMM registers.
var useAVX2 = cpu.X86.HasAVX2

// maskArch is Mask's implementation. It stays within the inlining budget, so
// Mask callers call the assembly directly: its fixed cost, which dominates
// for 2-byte close payloads, is one call as it was for maskGeneric.
func maskArch(key [4]byte, pos int, b []byte) int {
	return maskAsm(unsafe.SliceData(b), len(b), binary.LittleEndian.Uint32(key[:]), pos)
}

// maskAsm is Mask for the n bytes at b (b may be nil when n is 0), with the
// key as a little-endian uint32. It masks payloads shorter than 64 bytes with
// general-purpose registers, longer ones with maskAVX2's or maskSSE2's code.
//
//go:noescape
func maskAsm(b *byte, n int, key uint32, pos int) int

// maskAVX2 and maskSSE2 XOR the n bytes at b with the little-endian key k
// repeated, i.e. b[i] with byte i%4 of k, for any n >= 0 and alignment of b:
// k must already be rotated for b's payload offset. maskAsm uses their code
// from 64 bytes up; the tests call them on every length.
//
//go:noescape
func maskAVX2(b *byte, n int, k uint32)

//go:noescape
func maskSSE2(b *byte, n int, k uint32)

package frame

import (
	"encoding/binary"
	"math/bits"
)

// Mask XORs b in place with the masking key (RFC 6455 §5.3), where pos is the
// offset of b[0] within the frame's payload, so a payload can be processed in
// chunks of any size. It returns the position after b (mod 4), to pass with
// the next chunk. Masking and unmasking are the same operation.
//
// On amd64 it is assembly (AVX2, else SSE2; see mask_amd64.s), and small
// enough to inline, so that a call costs what a call to maskGeneric did;
// elsewhere it is maskGeneric.
//
// It is exempt from the race detector (go:norace), which would instrument
// every byte and make -race test runs of large payloads crawl; it only
// touches b. (Assembly is never instrumented; the annotation matters for the
// Go loop in maskGeneric, and keeps Mask from being inlined into
// instrumented callers under -race.)
//
//go:norace
func Mask(key [4]byte, pos int, b []byte) int {
	return maskArch(key, pos, b)
}

// rotateKey returns key as a little-endian uint32, rotated so that its low
// byte is key[pos&3]: the key for a chunk starting at payload offset pos.
func rotateKey(key [4]byte, pos int) uint32 {
	return bits.RotateLeft32(binary.LittleEndian.Uint32(key[:]), -8*(pos&3))
}

// maskGeneric is Mask in portable Go: the implementation on architectures
// without assembly, and the reference the assembly is tested against.
//
//go:norace
func maskGeneric(key [4]byte, pos int, b []byte) int {
	pos &= 3
	if len(b) == 0 {
		return pos
	}
	// Rotate the key so that byte 0 of every 8-byte word lines up with key[pos].
	k := rotateKey(key, pos)
	k64 := uint64(k) | uint64(k)<<32
	i := 0
	for ; len(b)-i >= 32; i += 32 {
		w := b[i : i+32 : i+32]
		binary.LittleEndian.PutUint64(w[0:8], binary.LittleEndian.Uint64(w[0:8])^k64)
		binary.LittleEndian.PutUint64(w[8:16], binary.LittleEndian.Uint64(w[8:16])^k64)
		binary.LittleEndian.PutUint64(w[16:24], binary.LittleEndian.Uint64(w[16:24])^k64)
		binary.LittleEndian.PutUint64(w[24:32], binary.LittleEndian.Uint64(w[24:32])^k64)
	}
	for ; len(b)-i >= 8; i += 8 {
		w := b[i : i+8 : i+8]
		binary.LittleEndian.PutUint64(w, binary.LittleEndian.Uint64(w)^k64)
	}
	for ; i < len(b); i++ {
		b[i] ^= byte(k)
		k = k>>8 | k<<24
	}
	return (pos + len(b)) & 3
}

// Remask turns a payload chunk masked with key from into the same chunk
// masked with key to, in one pass: XOR with from^to. Use it for payloads that
// need no inspection (binary data, pings); pos is as for Mask.
func Remask(from, to [4]byte, pos int, b []byte) int {
	var k [4]byte
	for i := range k {
		k[i] = from[i] ^ to[i]
	}
	return Mask(k, pos, b)
}

package frame

import (
	crand "crypto/rand"
	"math/rand/v2"
	"sync"
)

// keyGens hands out ChaCha8 generators, each seeded from crypto/rand.
// ChaCha8 is a cryptographically strong generator, so keys are unpredictable
// to a client that sees other keys (RFC 6455 §5.3 and §10.3: a masking key
// "MUST NOT make it simple for server or proxies to predict"), while one key
// costs a few nanoseconds and no system call. A pool keeps that lock-free.
var keyGens = sync.Pool{New: func() any {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		// crypto/rand.Read does not fail on supported platforms (Go 1.24+).
		panic("frame: crypto/rand: " + err.Error())
	}
	return rand.NewChaCha8(seed)
}}

// NewKey returns a fresh, unpredictable masking key. It is safe for
// concurrent use and does not allocate.
func NewKey() [4]byte {
	g := keyGens.Get().(*rand.ChaCha8)
	v := g.Uint64()
	keyGens.Put(g)
	return [4]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
}

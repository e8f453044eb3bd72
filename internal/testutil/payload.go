package testutil

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// ChatJSON is about n bytes of chat-like JSON drawn from rng: the messages
// the compression tests and benchmarks send (it compresses about 4:1).
func ChatJSON(n int, rng *rand.Rand) []byte {
	var b strings.Builder
	b.WriteString("[")
	for b.Len() < n-64 {
		fmt.Fprintf(&b, `{"id":%d,"user":"u%03d","room":"r%02d","text":"msg %x"},`, rng.IntN(1e6), rng.IntN(1000), rng.IntN(100), rng.Uint32())
	}
	b.WriteString(`{}]`)
	return []byte(b.String())
}

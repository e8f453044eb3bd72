//go:build !race

package proxy

// heapLimit bounds the heap growth of the streaming tests (see
// relay_race_test.go for -race).
const heapLimit = 16 << 20

//go:build race

package proxy

// heapLimit bounds the heap growth of the streaming tests. The race
// detector's instrumentation allocates on its own, and sync.Pool drops a
// quarter of its Puts under -race, so its budget is looser.
const heapLimit = 64 << 20

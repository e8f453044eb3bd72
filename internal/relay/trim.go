package relay

import (
	"context"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"time"
)

// Memory trimming. Go collects garbage when the program allocates: a
// gateway that opened thousands of sessions and then went quiet keeps the
// handshakes' garbage, its pools and the stacks of finished goroutines
// (parked pumps) resident until the runtime's two-minute forced cycle, and
// returns freed pages to the OS only slowly after that. trimMemory watches
// for that state — much more heap than the last collection found live, and
// almost no allocation in the last second — and then collects and returns
// the free memory at once. It costs one collection per burst that ends; a
// busy gateway, which collects on its own, never meets the condition.

// trimEvery is how often trimMemory looks.
const trimEvery = 250 * time.Millisecond

// trimState.parked counts legs parked since the last trim, less those resumed
// since (a keepalive cycle that wakes a leg and parks it again frees
// nothing new). Parking frees
// memory the heap figures cannot show until a collection runs: when the last
// collection ran at the peak of a burst, the live heap it found includes the
// read buffers and stacks that parking has since given up.
type trimState struct {
	parked atomic.Int64
}

// parkFreed is what one park gives up: a read buffer and a pump's stack.
const parkFreed = readerSize + 4<<10

// trimPolicy decides whether to trim, from the heap's objects now (live and
// garbage), the live heap found by the last collection, what was allocated
// since the last look, and what parking has freed since the last trim.
func trimPolicy(objects, live, allocated, parked uint64) bool {
	const (
		// Not worth a collection below this. It is low enough for the
		// stragglers: the legs that park after a burst's trim give up
		// their read buffers to a pool, which only a collection empties
		// (a few MiB for a few hundred legs, otherwise resident until
		// Go's two-minute forced cycle).
		minGarbage = 2 << 20
		quiet      = 256 << 10 // allocated per look: at most this
	)
	garbage := uint64(0)
	if objects > live {
		garbage = objects - live
	}
	garbage = max(garbage, parked)
	return allocated <= quiet && garbage >= max(minGarbage, live/8)
}

// Trim runs the memory trimmer until ctx ends. p is the gateway's poller
// (nil: no parking, only the heap figures count).
func Trim(ctx context.Context, p *Poller) {
	var ts trimState
	st := &ts
	if p != nil {
		st = &p.trim
	}
	samples := []rtmetrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/allocs:bytes"},
	}
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	var lastAllocs uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rtmetrics.Read(samples)
		if samples[0].Value.Kind() != rtmetrics.KindUint64 || samples[1].Value.Kind() != rtmetrics.KindUint64 ||
			samples[2].Value.Kind() != rtmetrics.KindUint64 {
			return // not this runtime's metrics
		}
		objects, live, allocs := samples[0].Value.Uint64(), samples[1].Value.Uint64(), samples[2].Value.Uint64()
		allocated := allocs - lastAllocs
		lastAllocs = allocs
		parked := uint64(max(st.parked.Load(), 0)) * parkFreed
		if trimPolicy(objects, live, allocated, parked) {
			st.parked.Store(0)
			// Two cycles: the first moves what sync.Pools hold (idle read
			// buffers, among others) to their victim caches, the second
			// frees it; FreeOSMemory's cycle is the second.
			runtime.GC()
			debug.FreeOSMemory()
			rtmetrics.Read(samples[2:])
			lastAllocs = samples[2].Value.Uint64()
		}
	}
}

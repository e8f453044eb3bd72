package proxy

import (
	"context"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
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

// trimPolicy decides whether to trim, from the heap's objects now (live and
// garbage), the live heap found by the last collection, and what was
// allocated since the last look.
func trimPolicy(objects, live, allocated uint64) bool {
	const (
		minGarbage = 8 << 20   // not worth a collection below this
		quiet      = 256 << 10 // allocated per look: at most this
	)
	garbage := uint64(0)
	if objects > live {
		garbage = objects - live
	}
	return allocated <= quiet && garbage >= max(minGarbage, live/8)
}

func (g *Gateway) trimMemory(ctx context.Context) {
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
		g.log.Debug().Uint64("objects", objects).Uint64("live", live).Uint64("allocated", allocated).Msg("trim check")
		if trimPolicy(objects, live, allocated) {
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

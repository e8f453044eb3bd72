package relay

// The inflate implementation, measured (BENCHMARKS.md "Inflating"):
// compress/flate against github.com/klauspost/compress/flate, each driven
// exactly as the relay drives it (an inflater's coroutine reading from
// inflCore, which only the generic decoder path can read), on small JSON,
// 64 KiB of text and random binary.

import (
	"bytes"
	stdflate "compress/flate"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"wsgate/internal/testutil"

	kflate "github.com/klauspost/compress/flate"
)

var flateImpls = []struct {
	name string
	new  func(io.Reader) io.ReadCloser
}{
	{"stdlib", stdflate.NewReader},
	{"klauspost", func(r io.Reader) io.ReadCloser { return kflate.NewReader(r) }},
}

// withFlate makes inflaters with impl until the test ends.
func withFlate(tb testing.TB, impl func(io.Reader) io.ReadCloser) {
	old := newFlateReader
	newFlateReader = impl
	tb.Cleanup(func() { newFlateReader = old })
}

func benchJSON(n int, seed uint64) []byte {
	return testutil.ChatJSON(n, rand.New(rand.NewPCG(seed, 1)))
}

func benchText(n int) []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	words := strings.Fields("the relay validates every frame and masks client frames again with a fresh key while the upstream answers in kind")
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	return []byte(b.String()[:n])
}

func benchRandom(n int) []byte {
	rng := rand.New(rand.NewPCG(5, 6))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// compressMsg compresses p as one permessage-deflate message (level 6,
// what most peers use).
func compressMsg(tb testing.TB, p []byte) []byte {
	var b bytes.Buffer
	w, _ := stdflate.NewWriter(&b, 6)
	w.Write(p)
	w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

var inflateCorpus = []struct {
	name string
	msg  []byte
	text bool
}{
	{"json_300B", benchJSON(300, 1), true},
	{"json_1KiB", benchJSON(1<<10, 2), true},
	{"text_64KiB", benchText(64 << 10), true},
	{"random_64KiB", benchRandom(64 << 10), false},
}

// BenchmarkInflate: one op checks one compressed message, as the relay
// does (begin, one feed with the whole payload, the UTF-8 check of text).
// SetBytes counts the inflated size: MB/s is inflated MB per CPU second.
func BenchmarkInflate(b *testing.B) {
	for _, impl := range flateImpls {
		for _, c := range inflateCorpus {
			b.Run(impl.name+"/"+c.name, func(b *testing.B) {
				withFlate(b, impl.new)
				w := newInflater()
				defer w.stop()
				z := compressMsg(b, c.msg)
				b.ReportAllocs()
				b.SetBytes(int64(len(c.msg)))
				cpu0 := processCPU()
				n := 0
				for b.Loop() {
					w.begin(nil, c.text, 1<<30)
					done, err := w.feed(z, true)
					if !done || err != nil || w.size != int64(len(c.msg)) {
						b.Fatalf("done %v, err %v, size %d", done, err, w.size)
					}
					n++
				}
				// CPU time, not wall time: on a shared machine it is what
				// stays comparable between implementations.
				cpu := float64(processCPU()-cpu0) / float64(n)
				b.ReportMetric(cpu, "cpu-ns/op")
				b.ReportMetric(cpu/1e6*float64(1<<20)/float64(len(c.msg)), "cpu-ms/MiB")
				b.ReportMetric(float64(len(c.msg))/float64(len(z)), "ratio")
			})
		}
	}
}

// TestInflaterFootprint reports the heap one pooled inflater holds (its
// decoder with its tables grown by real messages, the output ring and the
// coroutine's stack), for each implementation, and checks that it is
// bounded.
func TestInflaterFootprint(t *testing.T) {
	for _, impl := range flateImpls {
		t.Run(impl.name, func(t *testing.T) {
			withFlate(t, impl.new)
			const n = 200
			zs := make([][]byte, len(inflateCorpus))
			for i, c := range inflateCorpus {
				zs[i] = compressMsg(t, c.msg)
			}
			runtime.GC()
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			ws := make([]*inflater, n)
			for i := range ws {
				w := newInflater()
				for j, c := range inflateCorpus {
					w.begin(nil, c.text, 1<<30)
					if done, err := w.feed(zs[j], true); !done || err != nil {
						t.Fatalf("%s: %v %v", c.name, done, err)
					}
				}
				ws[i] = w
			}
			runtime.GC()
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
			t.Logf("heap %d -> %d, allocated %d per inflater", before.HeapAlloc, after.HeapAlloc, (after.TotalAlloc-before.TotalAlloc)/n)
			stack := (int64(after.StackInuse) - int64(before.StackInuse)) / n
			t.Logf("%s: %d KiB heap + %d KiB stack per inflater", impl.name, heap>>10, stack>>10)
			if heap+stack > 160<<10 {
				t.Errorf("%s: an inflater holds %d bytes, want < 160 KiB", impl.name, heap+stack)
			}
			for _, w := range ws {
				w.stop()
			}
			runtime.KeepAlive(ws)
		})
	}
}

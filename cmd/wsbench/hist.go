package main

import (
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in the manner of HdrHistogram:
// every power of two is split into 64 linear sub-buckets, so a recorded
// value is off by at most 1/64 (1.6 %) and recording is a few instructions
// with no allocation. Each connection owns one; they are merged at the end,
// so the hot path takes no lock.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

const (
	subBits     = 6
	subBuckets  = 1 << subBits // 64
	histBuckets = (64 - subBits) * subBuckets
)

// bucket maps a non-negative value (nanoseconds) to its bucket index.
func bucket(v int64) int {
	if v < subBuckets {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	n := bits.Len64(uint64(v))          // >= subBits+1
	m := uint64(v) >> (n - subBits - 1) // top subBits+1 bits: [64, 128)
	return (n-subBits)*subBuckets + int(m-subBuckets)
}

// bucketMid is the middle of bucket i's value range.
func bucketMid(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	e := i/subBuckets - 1 // shift applied to m
	m := int64(i%subBuckets + subBuckets)
	lo := m << e
	return lo + (int64(1)<<e)/2
}

func (h *hist) record(d time.Duration) {
	v := int64(d)
	h.counts[bucket(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the value at quantile q (0 < q <= 1); 0 when empty.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := bucketMid(i)
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// us is d in microseconds, rounded to 0.1 µs, for the JSON output.
func us(d time.Duration) float64 {
	return float64(d.Round(100*time.Nanosecond)) / 1e3
}

//go:build !unix

package relay

// processCPU is not measured here (BenchmarkInflate reports 0 CPU).
func processCPU() int64 { return 0 }

package main

import "wsgate/internal/procfs"

// The gateway under test is watched through /proc (Linux): its resident
// memory for idle-mem and its CPU time for the cost of one operation. A
// target may be several processes (nginx: a master and its worker), so a
// process is taken together with all its descendants.

// tree returns roots and all their live descendants.
func tree(roots []int) []int { return procfs.Tree(roots...) }

// cpuSeconds is the user+system CPU time of the processes pids, in seconds.
func cpuSeconds(pids []int) float64 {
	return float64(procfs.CPUTicks(pids)) / procfs.ClockTick
}

// rssKiB is the summed VmRSS of pids, in KiB.
func rssKiB(pids []int) int64 { return procfs.RSSKiB(pids) }

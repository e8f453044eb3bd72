//go:build unix

package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"wsgate/internal/procfs"
)

// The noise rule needs the machine's busy time and the CPU time of the
// processes this benchmark owns, both from /proc, in clock ticks (USER_HZ).
// With tick-based accounting (this kernel: no CONFIG_IRQ_TIME_ACCOUNTING)
// every busy tick in /proc/stat is charged to exactly one task too, so
// busy - ours is what every other process used.

const clockTick = procfs.ClockTick // USER_HZ

// busyTicks returns the busy time of all CPUs from /proc/stat (user, nice,
// system, irq, softirq) and, apart, the steal time: time the hypervisor
// gave to other guests, which slows a run down too but is not a process
// of this machine.
func busyTicks() (busy, steal int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	for _, i := range []int{1, 2, 3, 6, 7} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		busy += v
	}
	steal, _ = strconv.ParseInt(f[8], 10, 64)
	return busy, steal
}

// procSnap is one process in a snapshot of /proc.
type procSnap struct {
	comm        string
	ticks, kids int64 // own utime+stime; reaped children's cutime+cstime
	start       string
}

func snapshot() map[int]procSnap {
	m := map[int]procSnap{}
	for _, pid := range allPIDs() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(string(b[j+1:]))
		if len(f) < 20 {
			continue
		}
		var v [4]int64
		for k := range v {
			v[k], _ = strconv.ParseInt(f[11+k], 10, 64)
		}
		m[pid] = procSnap{comm: string(b[i+1 : j]), ticks: v[0] + v[1], kids: v[2] + v[3], start: f[19]}
	}
	return m
}

// topOthers names the processes outside ours that used the most CPU
// between two snapshots (their reaped children included), for the report:
// it says where the noise came from. The busy-time rule above is what
// decides; this view misses processes that came and went unreaped.
func topOthers(before, after map[int]procSnap, ours map[int]bool) map[string]float64 {
	use := map[string]float64{}
	for pid, a := range after {
		if ours[pid] {
			continue
		}
		d := a.ticks + a.kids
		if b, ok := before[pid]; ok && b.start == a.start {
			d -= b.ticks + b.kids
		}
		if d > 0 {
			use[a.comm] += float64(d) / clockTick
		}
	}
	return use
}

// The /proc readers shared with cmd/wsbench.
var (
	statFields = procfs.StatFields
	allPIDs    = procfs.PIDs
	tree       = procfs.Tree
	cpuTicks   = procfs.CPUTicks
)

// softirqThreads are the ksoftirqd/N kernel threads. Under load, loopback
// packet processing moves into them; that is the benchmark's own traffic,
// not noise.
func softirqThreads() []int {
	var out []int
	for _, pid := range allPIDs() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err == nil && strings.HasPrefix(string(b), "ksoftirqd/") {
			out = append(out, pid)
		}
	}
	return out
}

func alive(pid int) bool {
	f := statFields(pid)
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

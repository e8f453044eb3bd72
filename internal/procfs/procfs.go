// Package procfs reads what the benchmarks need about processes from Linux's
// /proc: CPU time, resident memory, and process trees (a target may be several
// processes, such as nginx's master and worker).
package procfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ClockTick is USER_HZ, the unit of utime/stime in /proc/PID/stat and of
// /proc/stat. It is 100 on every Linux architecture Go supports.
const ClockTick = 100

// StatFields returns the fields of /proc/PID/stat after the command name
// (which may hold spaces and parentheses): index 0 is the state, 1 the parent
// PID, 11 utime, 12 stime (fields 3, 4, 14 and 15 in proc(5)). It returns nil
// if the process is gone.
func StatFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// PIDs lists the processes alive now.
func PIDs() []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	out := make([]int, 0, len(dirs))
	for _, d := range dirs {
		if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// Tree returns roots and all their live descendants.
func Tree(roots ...int) []int {
	if len(roots) == 0 {
		return nil
	}
	children := map[int][]int{}
	for _, pid := range PIDs() {
		if f := StatFields(pid); len(f) > 1 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				children[pp] = append(children[pp], pid)
			}
		}
	}
	seen := map[int]bool{}
	var out []int
	var walk func(int)
	walk = func(p int) {
		if p <= 0 || seen[p] {
			return
		}
		seen[p] = true
		out = append(out, p)
		for _, c := range children[p] {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	return out
}

// CPUTicks is the summed utime+stime of pids, in ClockTick units.
func CPUTicks(pids []int) int64 {
	var t int64
	for _, p := range pids {
		f := StatFields(p)
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		t += u + s
	}
	return t
}

// RSSKiB is the summed VmRSS of pids, in KiB.
func RSSKiB(pids []int) int64 {
	var total int64
	for _, p := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					v, _ := strconv.ParseInt(f[0], 10, 64)
					total += v
				}
				break
			}
		}
	}
	return total
}

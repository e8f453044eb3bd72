//go:build unix

package main

// The syscall pass (-syscalls): after the rounds, each scenario runs once
// more against each proxy with `strace -c -f` attached to the proxy's
// processes, and the report shows system calls per operation, proxy next to
// proxy. Unlike throughput, these counts do not move with machine noise
// (strace slows the proxy down, but a message still costs the calls it
// costs), so they show where a gap in CPU per operation comes from.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// syscallRun is one traced run: calls by syscall name over Ops operations.
type syscallRun struct {
	Scenario string           `json:"scenario"`
	Target   string           `json:"target"`
	Ops      int64            `json:"ops"`
	Calls    map[string]int64 `json:"calls"`
	Errors   map[string]int64 `json:"errors,omitempty"` // failed calls (EAGAIN reads…)
	Failed   string           `json:"failed,omitempty"`
}

const syscallsFile = "syscalls.json"

// runSyscalls traces every scenario once against every target that is a
// proxy (not direct) and writes out/syscalls.json.
func (b *bench) runSyscalls(ctx context.Context) error {
	if _, err := exec.LookPath("strace"); err != nil {
		return fmt.Errorf("-syscalls needs strace (apt-get install strace): %w", err)
	}
	var out []syscallRun
	for _, s := range b.c.scenarios {
		for _, t := range b.targets {
			if t.direct() || !runsScenario(b.c, s, t.name) {
				continue
			}
			r, err := b.traceOne(ctx, s, t)
			if err != nil {
				return err
			}
			total := int64(0)
			for _, n := range r.Calls {
				total += n
			}
			perOp := 0.0
			if r.Ops > 0 {
				perOp = float64(total) / float64(r.Ops)
			}
			fmt.Fprintf(os.Stderr, "syscalls %-15s %-12s %8d ops %6.2f calls/op %s\n", s, t.name, r.Ops, perOp, r.Failed)
			out = append(out, r)
		}
	}
	data, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.c.out, syscallsFile), data, 0o644)
}

// traceOne runs scenario s against t under strace. The trace covers the
// whole wsbench run, so the run has no warm-up: what it counts is what its
// operations cost, plus the opening of its connections (64 of them for the
// echo scenarios: a few calls per thousands of messages).
func (b *bench) traceOne(ctx context.Context, s string, t *target) (syscallRun, error) {
	r := syscallRun{Scenario: s, Target: t.name}
	if s == "idle-mem" {
		if err := b.restart(ctx, t); err != nil {
			return r, err
		}
	}
	pids := []int{t.p.cmd.Process.Pid}
	b.reg.noteKids(t.p)
	pids = append(pids, t.p.kids...)
	file := filepath.Join(b.c.work, fmt.Sprintf("strace-%s-%s.txt", t.name, s))
	args := []string{"-c", "-f", "-q", "-o", file}
	for _, p := range pids {
		args = append(args, "-p", strconv.Itoa(p))
	}
	st := exec.Command("strace", args...)
	st.Stderr = os.Stderr
	if err := st.Start(); err != nil {
		return r, err
	}
	time.Sleep(time.Second) // strace attaches every thread before the load starts

	wargs := b.wsbenchArgs(s, t)
	for i, a := range wargs {
		if a == "-warmup" {
			wargs[i+1] = "0s"
		}
	}
	rctx, cancel := context.WithTimeout(ctx, b.c.duration+b.c.settle+3*time.Minute)
	defer cancel()
	wb := exec.CommandContext(rctx, filepath.Join(b.c.bin, "wsbench"), wargs...)
	outb, werr := wb.Output()

	_ = st.Process.Signal(syscall.SIGINT) // detach: strace writes the summary
	_ = st.Wait()
	var res result
	switch {
	case werr != nil:
		r.Failed = werr.Error()
	case json.Unmarshal(lastJSON(outb), &res) != nil:
		r.Failed = "no JSON output"
	}
	r.Ops = res.Ops
	if s == "idle-mem" {
		r.Ops = int64(res.Opened)
	}
	calls, errs, err := parseStraceSummary(file)
	if err != nil && r.Failed == "" {
		r.Failed = err.Error()
	}
	r.Calls, r.Errors = calls, errs
	return r, nil
}

// lastJSON is the last line of wsbench's output (its result).
func lastJSON(b []byte) []byte {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return []byte(lines[len(lines)-1])
}

// parseStraceSummary reads `strace -c` output:
//
//	% time     seconds  usecs/call     calls    errors syscall
//	------ ----------- ----------- --------- --------- ----------------
//	 52.10    0.412345           3    120000      6000 read
func parseStraceSummary(file string) (calls, errs map[string]int64, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	calls, errs = map[string]int64{}, map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[len(fields)-1] == "total" || fields[len(fields)-1] == "syscall" {
			continue
		}
		name := fields[len(fields)-1]
		// With an errors column: 6 fields; without (no call failed): 5.
		n, err1 := strconv.ParseInt(fields[3], 10, 64)
		if err1 != nil {
			continue
		}
		calls[name] += n
		if len(fields) == 6 {
			if e, err := strconv.ParseInt(fields[4], 10, 64); err == nil {
				errs[name] += e
			}
		}
	}
	if len(calls) == 0 {
		return nil, nil, fmt.Errorf("strace wrote no summary to %s", file)
	}
	return calls, errs, sc.Err()
}

// loadSyscalls reads out/syscalls.json, or nil when there is none.
func loadSyscalls(out string) []syscallRun {
	data, err := os.ReadFile(filepath.Join(out, syscallsFile))
	if err != nil {
		return nil
	}
	var runs []syscallRun
	if json.Unmarshal(data, &runs) != nil {
		return nil
	}
	return runs
}

// syscallTables writes the report's section: per scenario, the calls per
// operation of the most used syscalls, one column per target, and the
// total; failed calls in brackets (for read, mostly EAGAIN: a read that
// found nothing and parked the reader).
func syscallTables(runs []syscallRun, scenarios []string, p func(string, ...any)) {
	if len(runs) == 0 {
		return
	}
	p("## System calls per operation\n\n")
	p("Each scenario once more against each proxy with `strace -c -f` attached to the proxy's processes for the whole run (no warm-up), after the measured rounds: the proxy's system calls divided by the run's operations (echoed messages, MiB messages, or sessions opened and closed). strace slows the proxy down, but not the calls an operation takes, so these figures do not move with machine noise. In brackets: calls that failed (for `read`, mostly EAGAIN: the read that finds nothing and parks the reader).\n\n")
	for _, s := range scenarios {
		var rs []syscallRun
		for _, r := range runs {
			if r.Scenario == s && r.Failed == "" && r.Ops > 0 {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		// The syscalls that make up 99% of some target's calls.
		names := map[string]bool{}
		for _, r := range rs {
			total := int64(0)
			for _, n := range r.Calls {
				total += n
			}
			for name, n := range r.Calls {
				if float64(n)/float64(r.Ops) >= 0.01 && float64(n) >= 0.005*float64(total) {
					names[name] = true
				}
			}
		}
		var list []string
		for n := range names {
			list = append(list, n)
		}
		first := rs[0]
		sortByCount(list, first.Calls)
		p("### %s (calls %s)\n\n| syscall |", s, strings.TrimPrefix(opText[s], "µs "))
		for _, r := range rs {
			p(" %s |", displayName(r.Target))
		}
		p("\n|---|")
		for range rs {
			p("---:|")
		}
		p("\n")
		for _, name := range list {
			p("| `%s` |", name)
			for _, r := range rs {
				v := float64(r.Calls[name]) / float64(r.Ops)
				cell := f(v, 2)
				if e := r.Errors[name]; e > 0 {
					cell += fmt.Sprintf(" (%s)", f(float64(e)/float64(r.Ops), 2))
				}
				p(" %s |", cell)
			}
			p("\n")
		}
		p("| **all** |")
		for _, r := range rs {
			total := int64(0)
			for _, n := range r.Calls {
				total += n
			}
			p(" **%s** |", f(float64(total)/float64(r.Ops), 2))
		}
		p("\n\n")
	}
}

// sortByCount orders names by count, highest first (name on ties).
func sortByCount(names []string, count map[string]int64) {
	for i := 1; i < len(names); i++ {
		for j := i; j > 0; j-- {
			a, b := names[j-1], names[j]
			if count[a] > count[b] || count[a] == count[b] && a < b {
				break
			}
			names[j-1], names[j] = b, a
		}
	}
}

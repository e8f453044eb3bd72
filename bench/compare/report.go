//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// env describes the machine and the software measured, for the report.
type env struct {
	Date, CPU, Kernel, Mem, Go, Commit string
	Versions                           map[string]string
	Elapsed                            time.Duration
	Examples                           map[string]string // scenario (or "wsgate-tls/" + scenario) -> a wsbench command line
}

func output(name string, args ...string) string {
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(b) == 0 {
		return "unknown"
	}
	return strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
}

func environment(c config, b *bench) *env {
	e := &env{
		Date:     time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		CPU:      fmt.Sprintf("%s, %d CPUs", cpuModel(), runtime.NumCPU()),
		Kernel:   output("uname", "-sr"),
		Go:       runtime.Version(),
		Versions: map[string]string{},
		Examples: map[string]string{},
	}
	if mem, err := os.ReadFile("/proc/meminfo"); err == nil {
		e.Mem = strings.Join(strings.Fields(strings.SplitN(string(mem), "\n", 2)[0])[1:], " ")
	}
	e.Commit = output("git", "rev-parse", "--short", "HEAD")
	if st := output("git", "status", "--porcelain", "--untracked-files=no"); st != "" && st != "unknown" {
		e.Commit += " with uncommitted changes"
	}
	e.Versions["wsgate"] = strings.TrimPrefix(output(filepath.Join(c.bin, "wsgate"), "version"), "wsgate ") + " (" + e.Commit + ")"
	e.Versions["nginx"] = output("nginx", "-v")
	e.Versions["haproxy"] = output("haproxy", "-v")
	e.Versions["caddy"] = output("caddy", "version")
	for _, s := range c.scenarios {
		for _, t := range b.targets {
			switch {
			case t.name == "wsgate":
				e.Examples[s] = "wsbench " + strings.Join(quoteArgs(b.wsbenchArgs(s, t)), " ")
			case t.name == tlsTarget && runsScenario(c, s, t.name):
				e.Examples[tlsTarget+"/"+s] = "wsbench " + strings.Join(quoteArgs(b.wsbenchArgs(s, t)), " ")
			}
		}
	}
	return e
}

// meta is what the report needs besides the runs, saved next to
// runs.jsonl so that -rerender can rewrite the report without running
// anything.
type meta struct {
	Env                              *env
	Command                          string
	Rounds, MaxRounds, Sessions      int
	Budget, Duration, Warmup, Settle time.Duration
	QuietWait                        time.Duration
	Noise                            float64
	Scenarios, Targets               []string
	TLSScenarios                     []string `json:",omitempty"`
}

func saveMeta(c config, e *env) error {
	m := meta{Env: e, Command: c.command, Rounds: c.rounds, MaxRounds: c.maxRounds, Sessions: c.sessions,
		Budget: c.budget, Duration: c.duration, Warmup: c.warmup, Settle: c.settle, QuietWait: c.quietWait,
		Noise: c.noise, Scenarios: c.scenarios, Targets: c.targets, TLSScenarios: c.tlsScenarios}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.out, "meta.json"), append(b, '\n'), 0o644)
}

// rerenderReport rewrites the report and chart from c.out's saved runs.
func rerenderReport(c config) error {
	b, err := os.ReadFile(filepath.Join(c.out, "meta.json"))
	if err != nil {
		return err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("meta.json: %w", err)
	}
	c.command, c.rounds, c.maxRounds, c.sessions = m.Command, m.Rounds, m.MaxRounds, m.Sessions
	c.budget, c.duration, c.warmup, c.settle, c.quietWait = m.Budget, m.Duration, m.Warmup, m.Settle, m.QuietWait
	c.noise, c.scenarios, c.targets = m.Noise, m.Scenarios, m.Targets
	c.tlsScenarios = m.TLSScenarios
	if c.tlsScenarios == nil {
		c.tlsScenarios = []string{"idle-mem"} // meta.json from before -tls-scenarios
	}
	f, err := os.Open(filepath.Join(c.out, "runs.jsonl"))
	if err != nil {
		return err
	}
	defer f.Close()
	var runs []*runRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		r := new(runRecord)
		if err := json.Unmarshal(sc.Bytes(), r); err != nil {
			return fmt.Errorf("runs.jsonl: %w", err)
		}
		runs = append(runs, r)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return writeReport(c, m.Env, runs)
}

// cell is one scenario × target.
type cell struct {
	kept, discarded, failed int
	fallback                bool // too few kept runs: medians over noisy runs too
	value, p50, p99, p999   float64
	cpuOp, openRate         float64
	ratio, cpuRatio         float64 // medians of same-round ratios to nginx
	pairs                   int
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// summarize computes the medians of each scenario × target. The rule of
// the comparison is that noisy runs do not count; but a figure needs
// c.rounds runs, so a cell with fewer kept runs than that (or a ratio with
// fewer kept pairs) falls back to every run that did not fail, noisy ones
// included, and is marked with a dagger. The kept counts are shown next to
// it either way.
func summarize(c config, runs []*runRecord) map[string]map[string]*cell {
	need := max(c.rounds, 1)
	out := map[string]map[string]*cell{}
	for _, s := range c.scenarios {
		out[s] = map[string]*cell{}
		for _, t := range c.targets {
			cl := &cell{}
			var kept, all []*runRecord
			for _, r := range runs {
				if r.Scenario != s || r.Target != t {
					continue
				}
				switch {
				case r.Failed != "":
					cl.failed++
					continue
				case r.Kept:
					cl.kept++
					kept = append(kept, r)
				default:
					cl.discarded++
				}
				all = append(all, r)
			}
			use := kept
			if len(kept) < need {
				use, cl.fallback = all, true
			}
			pick := func(f func(*runRecord) float64) float64 {
				var xs []float64
				for _, r := range use {
					if v := f(r); v != 0 {
						xs = append(xs, v)
					}
				}
				return median(xs)
			}
			cl.value = pick(func(r *runRecord) float64 { return r.Value })
			cl.p50 = pick(func(r *runRecord) float64 { return r.P50us })
			cl.p99 = pick(func(r *runRecord) float64 { return r.P99us })
			cl.p999 = pick(func(r *runRecord) float64 { return r.P999us })
			cl.cpuOp = pick(func(r *runRecord) float64 { return r.GatewayCPUPerOpUs })
			cl.openRate = pick(openRate)
			out[s][t] = cl
		}
		for _, t := range c.targets {
			cl := out[s][t]
			value := func(r *runRecord) float64 { return r.Value }
			cpu := func(r *runRecord) float64 { return r.GatewayCPUPerOpUs }
			base := ratioBase(t)
			rs := sameRoundRatios(runs, s, t, base, value, isKept)
			cs := sameRoundRatios(runs, s, t, base, cpu, isKept)
			if len(rs) < need {
				cl.fallback = true
				rs = sameRoundRatios(runs, s, t, base, value, notFailed)
				cs = sameRoundRatios(runs, s, t, base, cpu, notFailed)
			}
			cl.pairs = len(rs)
			cl.ratio, cl.cpuRatio = median(rs), median(cs)
		}
	}
	return out
}

func isKept(r *runRecord) bool    { return r.Kept }
func notFailed(r *runRecord) bool { return r.Failed == "" }

func openRate(r *runRecord) float64 {
	if r.OpenS == 0 {
		return 0
	}
	return float64(r.Opened) / r.OpenS
}

// sameRoundRatios pairs each run of target t in scenario s with the run of
// target base in the same round, both accepted by ok, and returns
// f(t's run) / f(base's run) for each pair where both figures exist.
func sameRoundRatios(runs []*runRecord, s, t, base string, f func(*runRecord) float64, ok func(*runRecord) bool) []float64 {
	var out []float64
	for _, r := range runs {
		if r.Scenario != s || r.Target != t || !ok(r) {
			continue
		}
		for _, b := range runs {
			if b.Scenario == s && b.Target == base && b.Round == r.Round && ok(b) && f(b) != 0 && f(r) != 0 {
				out = append(out, f(r)/f(b))
			}
		}
	}
	return out
}

// headroomRow compares direct with the fastest proxy of a scenario.
type headroomRow struct {
	direct, best float64 // medians
	bestName     string
	ratio        float64 // median of same-round direct ÷ best
	pairs        int
	noisy        bool
}

func headroom(c config, runs []*runRecord, sum map[string]map[string]*cell, s string) (headroomRow, bool) {
	d := sum[s]["direct"]
	if d == nil {
		return headroomRow{}, false
	}
	f := func(r *runRecord) float64 { return r.Value }
	h := headroomRow{direct: d.value, best: math.NaN()}
	if s == "idle-mem" {
		f, h.direct = openRate, d.openRate
	}
	for _, t := range c.targets {
		cl := sum[s][t]
		if t == "direct" || informational(t) || cl == nil {
			continue
		}
		v := cl.value
		if s == "idle-mem" {
			v = cl.openRate
		}
		if !math.IsNaN(v) && (math.IsNaN(h.best) || v > h.best) {
			h.best, h.bestName = v, t
		}
	}
	if h.bestName == "" {
		return h, false
	}
	rs := sameRoundRatios(runs, s, "direct", h.bestName, f, isKept)
	if len(rs) < max(c.rounds, 1) {
		h.noisy = true
		rs = sameRoundRatios(runs, s, "direct", h.bestName, f, notFailed)
	}
	h.ratio, h.pairs = median(rs), len(rs)
	return h, true
}

var scenarioText = map[string]string{
	"echo-small":     "64 connections, each a closed loop of one 128-byte text message and its echo.",
	"echo-pipelined": "64 connections, 16 messages of 128 bytes in flight on each.",
	"stream-large":   "4 connections sending 1 MiB binary messages one way to the sink; MB/s delivered (the window ends when the sink has answered the final Close).",
	"handshake-rate": "16 dialers, each opening a session (TCP + upgrade), exchanging one message, closing it with a close handshake; connect time is TCP connect until the 101 is verified.",
	"idle-mem":       "%s sessions opened (one message each), held, then closed with a close handshake; growth of the target's RSS from a freshly started process, per session.",
	"echo-deflate":   "echo-small with permessage-deflate negotiated end to end (no context takeover): 64 connections, each a closed loop of one 1 KiB JSON-like text message, compressed about 4:1, and its echo. The tunnels pass the compressed frames through; wsgate also inflates every message in both directions to check its size and UTF-8.",
}

var opText = map[string]string{
	"echo-small":     "µs per echoed message (both directions)",
	"echo-pipelined": "µs per echoed message (both directions)",
	"stream-large":   "µs per 1 MiB message",
	"handshake-rate": "µs per session",
	"idle-mem":       "µs per session (open + close)",
	"echo-deflate":   "µs per echoed message (both directions)",
}

func f(v float64, digits int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf("%.*f", digits, v)
}

// num prints large rates without decimals and small values with some.
func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case math.Abs(v) >= 1000:
		return addCommas(fmt.Sprintf("%.0f", v))
	case math.Abs(v) >= 100:
		return f(v, 0)
	case math.Abs(v) >= 10:
		return f(v, 1)
	}
	return f(v, 2)
}

func addCommas(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func ms(us float64) string {
	if math.IsNaN(us) {
		return "—"
	}
	return f(us/1000, 2)
}

// keptMarker starts the part of BENCHMARKS.md that writeReport keeps as
// it is: figures measured by other scripts.
const keptMarker = "<!-- kept by bench/compare: sections below are written by hand from other scripts -->"

func writeReport(c config, e *env, runs []*runRecord) error {
	sum := summarize(c, runs)
	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format, a...) }

	total, kept, noisy, failed := 0, 0, 0, 0
	var noises, waits []float64
	for _, r := range runs {
		total++
		noises = append(noises, r.Noise)
		waits = append(waits, r.QuietWaitS)
		switch {
		case r.Failed != "":
			failed++
		case r.Kept:
			kept++
		default:
			noisy++
		}
	}
	rounds := 0
	for _, r := range runs {
		rounds = max(rounds, r.Round)
	}

	p("# Benchmarks\n\n")
	p("wsgate next to nginx, HAProxy and Caddy as plain WebSocket reverse proxies, and next to no proxy at all (\"direct\"), all on loopback on one machine. ")
	p("This file is written by `bench/compare.sh`; rerun it rather than editing the figures (see the README, \"Benchmarks\").\n\n")
	p("- Date: %s; the whole comparison took %s.\n", e.Date, e.Elapsed)
	p("- Machine: %s, %s, %s RAM. Every process is capped at 20,000 open files.\n", e.CPU, e.Kernel, e.Mem)
	p("- Software: wsgate %s built with %s; %s; %s; Caddy %s (Debian packages).\n", e.Versions["wsgate"], e.Go, e.Versions["nginx"], e.Versions["haproxy"], e.Versions["caddy"])
	p("- Setup: each proxy has one worker (nginx `worker_processes 1`, HAProxy `nbthread 1`); wsgate and Caddy are Go programs and run with Go's default GOMAXPROCS (%d here); the load generator and the backend share the same %d CPUs. No access logs anywhere. Configs: [bench/configs](%s).\n", runtime.NumCPU(), runtime.NumCPU(), rel(c.md, c.configs))
	hasTLS := slices.ContainsFunc(c.targets, isTLS)
	if hasTLS {
		p("- TLS: the targets named `…-tls` (shown as \"… (wss://)\") are the same proxies terminating TLS on the client side: one self-signed ECDSA P-256 certificate for 127.0.0.1 generated at start, TLS 1.3 only, dialled at wss:// with `wsbench -insecure`, which never resumes a session (and nginx and HAProxy keep no session cache or tickets), so every handshake is a full one; the upstream side stays plain ws://. They run %s only, and are compared with each other: their \"× nginx\" is the ratio to nginx (wss://) in the same round, and they have their own rows in the best-peer table; they are left out of the headroom check and the chart, which compare the plain ws:// proxies.\n",
			strings.Join(tlsScenarioList(c), ", "))
	}
	only := ""
	if hasTLS {
		only = fmt.Sprintf(" (the -tls targets: %s only)", strings.Join(tlsScenarioList(c), ", "))
	}
	p("- Runs: %d round(s); in each, every scenario runs against `%s` in that order%s, so each round gives same-run ratios to nginx. %s measured after %s of warm-up per run; idle-mem holds %d sessions.\n\n",
		rounds, strings.Join(c.targets, " "), only, c.duration, c.warmup, c.sessions)

	p("**Noise.** A run is discarded when other processes used more than %.0f%% of the machine's CPU (all %d CPUs) while it ran: the machine's busy time from `/proc/stat` minus the CPU time of this benchmark's own processes (load generator, backend, proxies, and the kernel's softirq threads that carry their loopback traffic). ", 100*c.noise, runtime.NumCPU())
	p("This time: %d runs, %d kept, **%d discarded for noise**, %d failed; median noise %.1f%%, worst %.1f%%. Before each run the script waits up to %s for half a second under the threshold (median wait %.1f s; a tenth of the budget at most in all), and extra rounds (up to %d in all, within %s) replace discarded runs. Medians below are over kept runs when there are at least %d of them; a figure marked † had fewer (or fewer kept pairs, for a ratio) and is the median over all runs that did not fail, noisy ones included: read it with the noise above in mind.\n\n",
		total, kept, noisy, failed, 100*median(noises), 100*maxOf(noises), c.quietWait, median(waits), c.maxRounds, c.budget, max(c.rounds, 1))

	others := map[string]float64{}
	var steals []float64
	for _, r := range runs {
		steals = append(steals, r.Steal)
		for k, v := range r.Others {
			others[k] += v
		}
	}
	if len(others) > 0 {
		names := make([]string, 0, len(others))
		for k := range others {
			names = append(names, k)
		}
		slices.SortFunc(names, func(a, b string) int { return cmpFloat(others[b], others[a]) })
		var parts []string
		for _, n := range names[:min(8, len(names))] {
			parts = append(parts, fmt.Sprintf("`%s` %.0f s", n, others[n]))
		}
		p("The other processes seen using CPU during the runs (CPU seconds, summed over all runs): %s. ", strings.Join(parts, ", "))
	}
	p("Time stolen by the hypervisor (not counted as noise): median %.1f%%, worst %.1f%%.\n\n", 100*median(steals), 100*maxOf(steals))

	p("![ratios to nginx](%s)\n\n", rel(c.md, filepath.Join(c.out, "ratios.svg")))

	// Headroom: the generator is not the bottleneck.
	p("## The load generator is not the bottleneck\n\n")
	p("The same client against the backend directly, next to the proxy with the highest median; \"direct ÷ fastest\" is the median over rounds of the ratio within a round. For idle-mem the figure is the rate at which sessions were opened. ")
	p("The target is 1.5x or more. On this machine the load generator, the backend and the proxy share %d CPUs and most of their time is the kernel's loopback TCP work (each `write` pays for the receiver's side too), so removing the proxy can at best add back what the proxy used: direct ÷ proxied ≈ 1 + proxy CPU ÷ (client + backend CPU) per operation.\n\n", runtime.NumCPU())
	p("| scenario | direct | fastest proxy | direct ÷ fastest | ≥ 1.5x |\n|---|---:|---:|---:|:---:|\n")
	for _, s := range c.scenarios {
		h, ok := headroom(c, runs, sum, s)
		if !ok {
			continue
		}
		unit := unitOf(runs, s, "direct")
		if s == "idle-mem" {
			unit = "sessions/s"
		}
		mark := "no"
		if h.ratio >= 1.5 {
			mark = "yes"
		}
		dag := ""
		if h.noisy {
			dag = " †"
		}
		p("| %s | %s %s | %s (%s) | %sx%s | %s |\n", s, num(h.direct), unit, num(h.best), h.bestName, f(h.ratio, 2), dag, mark)
	}
	p("\n")

	p("## Results\n\n")
	p("Medians. \"× nginx\" is the median over rounds of the target's figure divided by nginx's figure from the same round. CPU is the target's own user+system time over the measured window, from `/proc/PID/stat` (nginx: master and worker), divided by the operations in that window.")
	if hasTLS {
		p(" The wss:// targets' \"× nginx\" is to nginx (wss://).")
	}
	p("\n\n")
	for _, s := range c.scenarios {
		unit := unitOf(runs, s, "nginx")
		text := scenarioText[s]
		if s == "idle-mem" {
			text = fmt.Sprintf(text, addCommas(fmt.Sprint(c.sessions)))
		}
		p("### %s\n\n%s\n\n", s, text)
		switch s {
		case "idle-mem":
			p("| target | KiB/session | × nginx | open rate (sessions/s) | CPU %s | CPU × nginx | runs kept / discarded / failed |\n|---|---:|---:|---:|---:|---:|---|\n", opText[s])
			for _, t := range c.targets {
				if !runsScenario(c, s, t) {
					continue
				}
				cl := sum[s][t]
				kib, ratio, cpuRatio := num(cl.value), ratioText(t, cl.ratio), ratioText(t, cl.cpuRatio)
				if t == "direct" {
					kib, ratio = "n/a", "n/a"
				}
				p("| %s%s | %s | %s | %s | %s | %s | %d / %d / %d |\n", displayName(t), dagger(cl), kib, ratio, num(cl.openRate), num(cl.cpuOp), cpuRatio, cl.kept, cl.discarded, cl.failed)
			}
			if g, w := sum[s]["wsgate"], sum[s][tlsTarget]; g != nil && w != nil && runsScenario(c, s, tlsTarget) && !math.IsNaN(w.value) {
				p("\nWith wss:// on the client side wsgate holds %s KiB per idle session%s, against %s KiB over ws:// (median of same-round differences: %s KiB, what the TLS connection adds). Its open rate and CPU per session include the TLS handshake.\n",
					num(w.value), dagger(w), num(g.value), num(median(sameRoundDiffs(c, runs, s, tlsTarget, "wsgate"))))
			}
		case "stream-large":
			p("| target | %s | × nginx | CPU %s | CPU × nginx | runs kept / discarded / failed |\n|---|---:|---:|---:|---:|---|\n", unit, opText[s])
			for _, t := range c.targets {
				if !runsScenario(c, s, t) {
					continue
				}
				cl := sum[s][t]
				p("| %s%s | %s | %s | %s | %s | %d / %d / %d |\n", displayName(t), dagger(cl), num(cl.value), ratioText(t, cl.ratio), num(cl.cpuOp), ratioText(t, cl.cpuRatio), cl.kept, cl.discarded, cl.failed)
			}
		default:
			lat := "RTT"
			if s == "handshake-rate" {
				lat = "connect"
			}
			p("| target | %s | × nginx | %s p50 ms | p99 ms | p99.9 ms | CPU %s | CPU × nginx | runs kept / discarded / failed |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n", unit, lat, opText[s])
			for _, t := range c.targets {
				if !runsScenario(c, s, t) {
					continue
				}
				cl := sum[s][t]
				p("| %s%s | %s | %s | %s | %s | %s | %s | %s | %d / %d / %d |\n", displayName(t), dagger(cl), num(cl.value), ratioText(t, cl.ratio), ms(cl.p50), ms(cl.p99), ms(cl.p999), num(cl.cpuOp), ratioText(t, cl.cpuRatio), cl.kept, cl.discarded, cl.failed)
			}
		}
		p("\n")
	}

	p("## wsgate against the best peer\n\n")
	p("The peer with the best median in each scenario, and the median over rounds of wsgate's figure divided by that peer's from the same round; over ws:// and, where the -tls targets ran, with wss:// on the client side (wsgate (wss://) against the best peer with wss://).\n\n")
	p("| scenario | client side | best peer | wsgate ÷ best peer |\n|---|---|---|---:|\n")
	for _, s := range c.scenarios {
		for _, side := range []string{"ws://", "wss://"} {
			suffix := ""
			if side == "wss://" {
				suffix = "-tls"
			}
			// wsgate as run, then (when it ran) with GOMAXPROCS=1, one
			// worker like nginx's and HAProxy's.
			for _, one := range []string{"", onePSuffix} {
				g := "wsgate" + suffix + one
				if !slices.Contains(c.targets, g) {
					continue
				}
				peers := []string{"nginx" + suffix, "haproxy" + suffix, "caddy" + suffix, "caddy" + suffix + onePSuffix}
				if row, ok := bestPeerRow(c, runs, sum, s, g, peers); ok {
					p("| %s | %s | %s |\n", s, side+map[string]string{"": "", onePSuffix: ", GOMAXPROCS=1"}[one], row)
				}
			}
		}
	}
	p("\n")

	syscallTables(loadSyscalls(c.out), c.scenarios, p)

	p("## How it was run\n\n")
	p("One command, from the repository root:\n\n```sh\n%s\n```\n\n", c.command)
	p("It installs nginx, HAProxy and Caddy from Debian's packages if they are missing, builds `wsgate`, `wsbench` and the orchestrator (`bench/compare`), starts one `wsbench backend` shared by every target, renders the configs of [bench/configs](%s) into a temporary directory with free ports, runs the rounds, writes this file, the chart and every run as a JSON line in `runs.jsonl` (in [%s](%s)), and stops every process it started (by PID). ", rel(c.md, c.configs), c.out, rel(c.md, c.out))
	p("Before each idle-mem run the target is restarted, so its RSS growth is measured from a fresh process. Durations and counts come from environment variables: `DURATION`, `WARMUP`, `ROUNDS`, `MAX_ROUNDS`, `BUDGET`, `SESSIONS`, `SETTLE`, `SCENARIOS`, `TARGETS`, `TLS_SCENARIOS` (what the -tls targets run), `NOISE`, `QUIET_WAIT`, `OUT`.\n\n")
	p("The runs against wsgate were, for example (the port is picked per run; the other targets get the same flags and their own port and PID):\n\n```sh\n")
	for _, s := range c.scenarios {
		if ex := e.Examples[s]; ex != "" {
			p("%s\n", ex)
		}
	}
	for _, s := range c.scenarios {
		if ex := e.Examples[tlsTarget+"/"+s]; ex != "" {
			p("%s\n", ex)
		}
	}
	p("```\n\n")
	p("`wsbench` uses wsgate's own frame codec and upstream dialer (over crypto/tls for wss://): frames are built into reused buffers, each with a fresh masking key (except stream-large, which masks its 1 MiB payload once per connection and resends it, so that the client does not spend as much CPU re-masking as the relay it measures), and written with one system call per batch; connections are spread over source addresses 127.0.0.2–17 so that ports never run short.\n")

	// Measurements made apart from the comparison (bench/notes/*.md, e.g.
	// the inflate implementation's), kept in the report when it is rewritten.
	if notes, _ := filepath.Glob(filepath.Join(filepath.Dir(c.configs), "notes", "*.md")); len(notes) > 0 {
		for _, n := range notes {
			if b, err := os.ReadFile(n); err == nil {
				p("\n%s", b)
			}
		}
	}
	// Sections other scripts write (bench/broadcast.sh) follow keptMarker
	// and survive this rewrite.
	if old, err := os.ReadFile(c.md); err == nil {
		if i := strings.Index(string(old), keptMarker); i >= 0 {
			p("\n%s", old[i:])
		}
	}
	if err := os.WriteFile(c.md, []byte(w.String()), 0o644); err != nil {
		return err
	}
	note := fmt.Sprintf("%s, %s; %d of %d runs quiet enough to keep. Details in BENCHMARKS.md.", e.Date, e.CPU, kept, total)
	return os.WriteFile(filepath.Join(c.out, "ratios.svg"), []byte(chart(c, sum, note)), 0o644)
}

// rel is target as a link from the directory of the file from.
func rel(from, target string) string {
	a, err1 := filepath.Abs(filepath.Dir(from))
	b, err2 := filepath.Abs(target)
	if err1 != nil || err2 != nil {
		return target
	}
	r, err := filepath.Rel(a, b)
	if err != nil {
		return target
	}
	return filepath.ToSlash(r)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// displayName is how a target is named in the report's tables.
func displayName(t string) string {
	n := baseTarget(t)
	if isTLS(n) {
		n = strings.TrimSuffix(n, "-tls") + " (wss://)"
	}
	if baseTarget(t) != t {
		n += " GOMAXPROCS=1"
	}
	return n
}

// ratioText prints a ratio to the target's ratioBase.
func ratioText(t string, r float64) string { return f(r, 2) }

// bestPeerRow is the best-peer table's row for target g in scenario s:
// the peer with the best median and the median of same-round ratios
// (kept pairs, else every pair that did not fail, marked †).
func bestPeerRow(c config, runs []*runRecord, sum map[string]map[string]*cell, s, g string, peers []string) (string, bool) {
	if !runsScenario(c, s, g) {
		return "", false
	}
	lowerBetter := s == "idle-mem"
	best, bname := math.NaN(), ""
	for _, t := range peers {
		cl := sum[s][t]
		if cl == nil || math.IsNaN(cl.value) {
			continue
		}
		if math.IsNaN(best) || (lowerBetter && cl.value < best) || (!lowerBetter && cl.value > best) {
			best, bname = cl.value, t
		}
	}
	if cl := sum[s][g]; cl == nil || bname == "" {
		return "", false
	}
	note := "higher is better"
	if lowerBetter {
		note = "lower is better"
	}
	value := func(r *runRecord) float64 { return r.Value }
	rs, dag := sameRoundRatios(runs, s, g, bname, value, isKept), ""
	if len(rs) < max(c.rounds, 1) {
		rs, dag = sameRoundRatios(runs, s, g, bname, value, notFailed), " †"
	}
	return fmt.Sprintf("%s (%s %s) | %s%s (%s)", displayName(bname), num(best), unitOf(runs, s, bname), f(median(rs), 2), dag, note), true
}

// tlsScenarioList is what wsgate-tls runs, in the order of c.scenarios.
func tlsScenarioList(c config) []string {
	var out []string
	for _, s := range c.scenarios {
		if runsScenario(c, s, tlsTarget) {
			out = append(out, s)
		}
	}
	return out
}

// sameRoundDiffs is the value of t's run minus base's in the same round,
// for scenario s: over kept pairs when there are c.rounds of them, else
// over every pair that did not fail, as for the ratios.
func sameRoundDiffs(c config, runs []*runRecord, s, t, base string) []float64 {
	pairs := func(ok func(*runRecord) bool) []float64 {
		var out []float64
		for _, r := range runs {
			if r.Scenario != s || r.Target != t || !ok(r) || r.Value == 0 {
				continue
			}
			for _, b := range runs {
				if b.Scenario == s && b.Target == base && b.Round == r.Round && ok(b) && b.Value != 0 {
					out = append(out, r.Value-b.Value)
				}
			}
		}
		return out
	}
	if d := pairs(isKept); len(d) >= max(c.rounds, 1) {
		return d
	}
	return pairs(notFailed)
}

func dagger(cl *cell) string {
	if cl.fallback {
		return " †"
	}
	return ""
}

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func unitOf(runs []*runRecord, s, t string) string {
	for _, r := range runs {
		if r.Scenario == s && r.Target == t && r.Unit != "" {
			return r.Unit
		}
	}
	for _, r := range runs {
		if r.Scenario == s && r.Unit != "" && r.Target != "direct" {
			return r.Unit
		}
	}
	return ""
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// chart draws the ratios to nginx as grouped bars, one group per scenario.
func chart(c config, sum map[string]map[string]*cell, note string) string {
	colors := map[string]string{"wsgate": "#d9480f", "wsgate-1p": "#f08c00", "nginx": "#868e96", "haproxy": "#1971c2",
		"caddy": "#2f9e44", "caddy-1p": "#8ce99a", protoTarget: "#7048e8"}
	var ts []string
	for _, t := range c.targets {
		if t != "direct" && !informational(t) {
			ts = append(ts, t)
		}
	}
	top := 1.0
	for _, s := range c.scenarios {
		for _, t := range ts {
			if r := sum[s][t].ratio; !math.IsNaN(r) && !math.IsInf(r, 0) {
				top = max(top, r)
			}
		}
	}
	top = math.Ceil(top*1.15*4) / 4
	const (
		left, right, topPad, bottom = 60.0, 20.0, 60.0, 70.0
		plotH                       = 300.0
		barW, gap                   = 26.0, 34.0
	)
	groupW := float64(len(ts))*barW + gap
	width := left + right + groupW*float64(len(c.scenarios))
	height := topPad + plotH + bottom
	y := func(v float64) float64 { return topPad + plotH - v/top*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="15" font-weight="bold">wsgate and its peers as a ratio to nginx (median of same-round ratios)</text>`+"\n", left)
	fmt.Fprintf(&b, `<text x="%.0f" y="38" fill="#495057">Higher is better, except idle-mem: memory per idle session, where lower is better.</text>`+"\n", left)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#868e96" font-size="11">%s</text>`+"\n", left, height-2, xmlEscape(note))
	step := 0.25
	switch {
	case top > 8:
		step = 1
	case top > 3:
		step = 0.5
	}
	for v := 0.0; v <= top+1e-9; v += step {
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#e9ecef"/>`+"\n", left, width-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%.2f</text>`+"\n", left-6, y(v)+4, v)
	}
	fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#495057" stroke-dasharray="4 3"/>`+"\n", left, width-right, y(1), y(1))
	for i, s := range c.scenarios {
		x0 := left + gap/2 + float64(i)*groupW
		for j, t := range ts {
			r := sum[s][t].ratio
			if math.IsNaN(r) || math.IsInf(r, 0) {
				continue
			}
			x := x0 + float64(j)*barW
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.0f" height="%.1f" fill="%s"><title>%s %s: %.2f</title></rect>`+"\n",
				x, y(r), barW-3, y(0)-y(r), colors[t], t, s, r)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%.2f</text>`+"\n", x+(barW-3)/2, y(r)-4, r)
		}
		label := s
		if s == "idle-mem" {
			label = "idle-mem (lower = better)"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x0+float64(len(ts))*barW/2, topPad+plotH+18, label)
	}
	lx := left
	for _, t := range ts {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n", lx, height-36, colors[t], lx+16, height-26, t)
		lx += 90
	}
	b.WriteString("</svg>\n")
	return b.String()
}

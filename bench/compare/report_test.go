//go:build unix

package main

import (
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func rec(round int, s, t string, v float64, kept bool) *runRecord {
	r := &runRecord{Round: round, Scenario: s, Target: t, Kept: kept}
	r.Value, r.Unit, r.GatewayCPUPerOpUs = v, "msg/s", 1e6/v
	return r
}

func TestSummarizeSameRoundRatios(t *testing.T) {
	t.Parallel()
	c := config{scenarios: []string{"echo-small"}, targets: []string{"wsgate", "nginx", "direct"}}
	runs := []*runRecord{
		// Round 1: wsgate 0.5x nginx. Round 2: 2x, but nginx's run is
		// noisy, so the pair does not count. Round 3: 1x.
		rec(1, "echo-small", "wsgate", 100, true), rec(1, "echo-small", "nginx", 200, true), rec(1, "echo-small", "direct", 800, true),
		rec(2, "echo-small", "wsgate", 400, true), rec(2, "echo-small", "nginx", 200, false), rec(2, "echo-small", "direct", 800, true),
		rec(3, "echo-small", "wsgate", 300, true), rec(3, "echo-small", "nginx", 300, true), rec(3, "echo-small", "direct", 900, true),
	}
	sum := summarize(c, runs)
	w := sum["echo-small"]["wsgate"]
	if w.kept != 3 || w.discarded != 0 || w.value != 300 {
		t.Errorf("wsgate: kept %d discarded %d median %v", w.kept, w.discarded, w.value)
	}
	if w.pairs != 2 || math.Abs(w.ratio-0.75) > 1e-9 || w.fallback {
		t.Errorf("wsgate ratio %v from %d pairs (fallback %v), want 0.75 from 2", w.ratio, w.pairs, w.fallback)
	}
	if math.Abs(w.cpuRatio-1.5) > 1e-9 { // CPU per op is 1e6/value: (2 + 1) / 2
		t.Errorf("wsgate CPU ratio %v, want 1.5", w.cpuRatio)
	}
	if n := sum["echo-small"]["nginx"]; n.kept != 2 || n.discarded != 1 || n.ratio != 1 {
		t.Errorf("nginx: kept %d discarded %d ratio %v", n.kept, n.discarded, n.ratio)
	}
}

func TestSummarizeFallsBackToNoisyRuns(t *testing.T) {
	t.Parallel()
	c := config{scenarios: []string{"echo-small"}, targets: []string{"wsgate", "nginx"}}
	runs := []*runRecord{
		rec(1, "echo-small", "wsgate", 100, false), rec(1, "echo-small", "nginx", 200, false),
		{Round: 2, Scenario: "echo-small", Target: "wsgate", Failed: "boom"},
	}
	w := summarize(c, runs)["echo-small"]["wsgate"]
	if !w.fallback || w.value != 100 || w.ratio != 0.5 || w.failed != 1 {
		t.Errorf("fallback %v value %v ratio %v failed %d", w.fallback, w.value, w.ratio, w.failed)
	}
}

func TestWriteReport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := config{
		scenarios:    []string{"echo-small", "idle-mem"},
		targets:      []string{"wsgate", "wsgate-tls", "nginx", "nginx-tls", "haproxy", "haproxy-tls", "caddy", "direct"},
		tlsScenarios: []string{"idle-mem"},
		out:          dir, md: filepath.Join(dir, "BENCHMARKS.md"), configs: "bench/configs", command: "bench/compare.sh",
		rounds: 1, maxRounds: 1, sessions: 9000, noise: 0.1,
	}
	var runs []*runRecord
	for i, tg := range c.targets {
		if !isTLS(tg) {
			runs = append(runs, rec(1, "echo-small", tg, float64(100*(i+1)), true))
		}
		// KiB/session: wsgate 5, wsgate-tls 10, nginx 15, nginx-tls 20,
		// haproxy 25 (noisy), haproxy-tls 30.
		r := rec(1, "idle-mem", tg, float64(5*(i+1)), i != 4)
		r.Unit, r.Opened, r.OpenS = "KiB/session", 9000, 3
		runs = append(runs, r)
	}
	e := &env{Versions: map[string]string{}, Examples: map[string]string{"echo-small": "wsbench run -scenario echo-small"}}
	if err := writeReport(c, e, runs); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(c.md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## The load generator is not the bottleneck", "### echo-small", "### idle-mem",
		"| haproxy † |", "bench/compare.sh", "![ratios to nginx](ratios.svg)", "**1 discarded for noise**",
		// A TLS target's ratio is to nginx (wss://): 10 / 20.
		"| wsgate (wss://) | 10.0 | 0.50 |", "median of same-round differences: 5.00 KiB",
		"`wsgate wsgate-tls nginx nginx-tls haproxy haproxy-tls caddy direct` in that order (the -tls targets: idle-mem only)",
		// Best peers: over ws:// nginx (15 < 25 noisy haproxy), over wss:// nginx (wss://).
		"| idle-mem | ws:// | nginx (15.0 KiB/session) | 0.33 (lower is better) |",
		"| idle-mem | wss:// | nginx (wss://) (20.0 KiB/session) | 0.50 (lower is better) |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// The TLS targets ran idle-mem only: no row elsewhere, and none is the
	// fastest proxy of the headroom check.
	echo := string(md)[strings.Index(string(md), "### echo-small"):strings.Index(string(md), "### idle-mem")]
	if strings.Contains(echo, "wss://") {
		t.Errorf("echo-small table has a TLS row:\n%s", echo)
	}
	best := string(md)[strings.Index(string(md), "## wsgate against the best peer"):strings.Index(string(md), "## How it was run")]
	if strings.Contains(best, "| echo-small | wss://") {
		t.Errorf("best-peer table has a wss:// row for a scenario the TLS targets did not run:\n%s", best)
	}
	head := string(md)[strings.Index(string(md), "## The load generator"):strings.Index(string(md), "## Results")]
	if strings.Contains(head, "wss://") || strings.Contains(head, "-tls") {
		t.Errorf("the headroom check compares a TLS target:\n%s", head)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "ratios.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(svg), "-tls") || strings.Contains(string(svg), "wss://") {
		t.Error("the chart of ratios to nginx has a TLS target")
	}
	d := xml.NewDecoder(strings.NewReader(string(svg)))
	for {
		if _, err := d.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("chart is not well-formed XML: %v", err)
			}
			break
		}
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is a number")
	}
}

func TestSummarizeNeedsEnoughKeptRuns(t *testing.T) {
	t.Parallel()
	// Three rounds wanted, two kept: the figure is over all three runs.
	c := config{rounds: 3, scenarios: []string{"echo-small"}, targets: []string{"wsgate", "nginx", "direct"}}
	var runs []*runRecord
	for round, v := range []float64{100, 200, 900} {
		runs = append(runs,
			rec(round+1, "echo-small", "wsgate", v, round < 2),
			rec(round+1, "echo-small", "nginx", 100, true),
			rec(round+1, "echo-small", "direct", 3*v, true))
	}
	sum := summarize(c, runs)
	w := sum["echo-small"]["wsgate"]
	if !w.fallback || w.kept != 2 || w.discarded != 1 || w.value != 200 || w.ratio != 2 || w.pairs != 3 {
		t.Errorf("fallback %v kept %d discarded %d value %v ratio %v pairs %d", w.fallback, w.kept, w.discarded, w.value, w.ratio, w.pairs)
	}
	if n := sum["echo-small"]["nginx"]; n.fallback || n.value != 100 {
		t.Errorf("nginx: fallback %v value %v", n.fallback, n.value)
	}
	h, ok := headroom(c, runs, sum, "echo-small")
	if !ok || h.bestName != "wsgate" || h.ratio != 3 || !h.noisy {
		t.Errorf("headroom %+v", h)
	}
}

func TestTLSTargetRunsItsScenariosOnly(t *testing.T) {
	t.Parallel()
	c := config{rounds: 1, scenarios: []string{"echo-small", "idle-mem"}, targets: []string{"wsgate", "wsgate-tls", "nginx"},
		tlsScenarios: []string{"idle-mem"}}
	if runsScenario(c, "echo-small", "wsgate-tls") || !runsScenario(c, "idle-mem", "wsgate-tls") || !runsScenario(c, "echo-small", "wsgate") {
		t.Error("runsScenario")
	}
	// Every target has its run, wsgate-tls none of echo-small: nothing is short.
	var runs []*runRecord
	for _, tg := range c.targets {
		runs = append(runs, rec(1, "idle-mem", tg, 5, true))
		if tg != "wsgate-tls" {
			runs = append(runs, rec(1, "echo-small", tg, 100, true))
		}
	}
	if short := shortScenarios(c, runs); len(short) != 0 {
		t.Errorf("short %v, want none", short)
	}
	runs = runs[1:] // wsgate's idle-mem run
	if short := shortScenarios(c, runs); len(short) != 1 || short[0] != "idle-mem" {
		t.Errorf("short %v, want idle-mem", short)
	}
}

// TestParseStraceSummary reads strace -c output with and without the
// errors column, and skips the header and total lines.
func TestParseStraceSummary(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "strace.txt")
	text := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 52.10    0.412345           3    120000     60000 read
 40.00    0.300000           2    120000           write
  1.00    0.001000           1        10           epoll_pwait
------ ----------- ----------- --------- --------- ----------------
100.00    0.713345           2    240010     60000 total
`
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	calls, errs, err := parseStraceSummary(file)
	if err != nil {
		t.Fatal(err)
	}
	if calls["read"] != 120000 || calls["write"] != 120000 || calls["epoll_pwait"] != 10 || len(calls) != 3 {
		t.Errorf("calls %v", calls)
	}
	if errs["read"] != 60000 || errs["write"] != 0 {
		t.Errorf("errors %v", errs)
	}
	var b strings.Builder
	syscallTables([]syscallRun{
		{Scenario: "echo-small", Target: "wsgate", Ops: 60000, Calls: calls, Errors: errs},
		{Scenario: "echo-small", Target: "nginx", Ops: 60000, Calls: map[string]int64{"recvfrom": 120000, "sendto": 120000}},
	}, []string{"echo-small"}, func(format string, a ...any) { fmt.Fprintf(&b, format, a...) })
	for _, want := range []string{"| syscall | wsgate | nginx |", "| `read` | 2.00 (1.00) | 0.00 |", "| `recvfrom` | 0.00 | 2.00 |", "| **all** | **4.00** | **4.00** |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "epoll_pwait") {
		t.Errorf("a syscall under 0.01 per operation is listed:\n%s", b.String())
	}
}

// TestTargetVariants: the GOMAXPROCS=1 variants run the base proxy's
// config, keep its TLS side and are named apart; epoll-proto runs only its
// scenarios and stays out of the comparisons of peers.
func TestTargetVariants(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		target, base, display string
		tls                   bool
	}{
		{"wsgate", "wsgate", "wsgate", false},
		{"wsgate-1p", "wsgate", "wsgate GOMAXPROCS=1", false},
		{"wsgate-tls-1p", "wsgate-tls", "wsgate (wss://) GOMAXPROCS=1", true},
		{"caddy-tls", "caddy-tls", "caddy (wss://)", true},
	} {
		if b, tl, d := baseTarget(tc.target), isTLS(tc.target), displayName(tc.target); b != tc.base || tl != tc.tls || d != tc.display {
			t.Errorf("%s: base %q, TLS %v, shown as %q; want %q, %v, %q", tc.target, b, tl, d, tc.base, tc.tls, tc.display)
		}
	}
	if ratioBase("wsgate-tls-1p") != "nginx-tls" || ratioBase("wsgate-1p") != "nginx" {
		t.Error("ratioBase of the variants")
	}
	c := config{scenarios: []string{"echo-small", "echo-deflate"}, protoScenarios: []string{"echo-small"}}
	if !runsScenario(c, "echo-small", protoTarget) || runsScenario(c, "echo-deflate", protoTarget) || !runsScenario(c, "echo-deflate", "wsgate-1p") {
		t.Error("runsScenario: epoll-proto runs its scenarios only, the variants every one")
	}
	if !informational(protoTarget) || informational("wsgate-1p") {
		t.Error("informational: epoll-proto is no peer; wsgate-1p is compared")
	}
	b := &bench{c: config{work: t.TempDir(), bin: "bin", configs: "../configs"}}
	if _, err := b.newTarget("nginx-1p"); err == nil {
		t.Error("nginx-1p: a GOMAXPROCS variant of a proxy that is not Go was accepted")
	}
	tg, err := b.newTarget("wsgate-1p")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tg.env, "GOMAXPROCS=1") || len(tg.argv) == 0 || !strings.HasSuffix(tg.argv[0], "wsgate") {
		t.Errorf("wsgate-1p: argv %q env %q", tg.argv, tg.env)
	}
}

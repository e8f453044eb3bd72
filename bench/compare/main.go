//go:build unix

// Command compare runs wsbench's scenarios against wsgate, nginx, HAProxy,
// Caddy and no proxy at all ("direct"), in interleaved order, and writes
// BENCHMARKS.md and a chart. bench/compare.sh builds it and runs it; see
// the README's Benchmarks section.
//
// The targets named with -tls (wsgate-tls, nginx-tls, haproxy-tls,
// caddy-tls) are the same proxies terminating TLS on the client side (one
// self-signed ECDSA P-256 certificate generated at start, TLS 1.3, the
// upstream side plain ws://), dialled at wss://: they run only the
// scenarios of -tls-scenarios and are compared with each other (ratios to
// nginx-tls, best TLS peer), apart from the plain ws:// targets.
//
// One round is, for each scenario, one run against each target in a fixed
// order (wsgate wsgate-tls nginx nginx-tls … direct), so slow drifts of
// the machine hit every target alike and each round gives same-run ratios
// to nginx. A run is discarded when other processes used more than -noise
// of the machine's CPU while it ran; rounds repeat (up to -max-rounds,
// within -budget) until every scenario has -rounds kept runs per target.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

type config struct {
	bin, configs, work, out, md string
	rounds, maxRounds           int
	budget                      time.Duration
	duration, warmup, settle    time.Duration
	sessions                    int
	scenarios, targets          []string
	tlsScenarios                []string // what the -tls targets run
	protoScenarios              []string // what epoll-proto runs
	noise                       float64
	quietWait                   time.Duration
	command                     string
	syscalls                    bool // trace syscalls per operation after the rounds
}

func main() {
	var c config
	var scen, targ, tlsScen, protoScen string
	flag.StringVar(&c.bin, "bin", "", "directory holding the wsbench and wsgate binaries")
	flag.StringVar(&c.configs, "configs", "bench/configs", "directory of the peer config templates")
	flag.StringVar(&c.work, "work", "", "scratch directory for generated configs and logs (required)")
	flag.StringVar(&c.out, "out", "bench/out", "directory for runs.jsonl and ratios.svg")
	flag.StringVar(&c.md, "md", "BENCHMARKS.md", "report to write")
	flag.IntVar(&c.rounds, "rounds", 5, "kept runs wanted per target and scenario")
	flag.IntVar(&c.maxRounds, "max-rounds", 7, "rounds at most, to replace discarded runs")
	flag.DurationVar(&c.budget, "budget", 22*time.Minute, "start no extra round after this")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "measured window of a run")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured start of a run")
	flag.DurationVar(&c.settle, "settle", 5*time.Second, "idle-mem: wait before reading RSS")
	flag.IntVar(&c.sessions, "sessions", 9000, "idle-mem sessions")
	flag.StringVar(&scen, "scenarios", "echo-small,echo-pipelined,stream-large,handshake-rate,idle-mem,echo-deflate", "scenarios, in order")
	flag.StringVar(&targ, "targets", "wsgate,wsgate-tls,nginx,nginx-tls,haproxy,haproxy-tls,caddy,caddy-tls,direct", "targets, in interleaving order")
	flag.StringVar(&tlsScen, "tls-scenarios", "echo-small,handshake-rate,idle-mem", "the scenarios the -tls targets run (among -scenarios)")
	flag.StringVar(&protoScen, "proto-scenarios", "echo-small,echo-pipelined,handshake-rate,idle-mem", "the scenarios epoll-proto runs (among -scenarios; it has no permessage-deflate)")
	flag.Float64Var(&c.noise, "noise", 0.10, "discard a run when other processes used more than this share of all CPUs")
	flag.DurationVar(&c.quietWait, "quiet-wait", 5*time.Second, "before a run, wait up to this for half a second of quiet")
	flag.StringVar(&c.command, "command", "", "the command line to print in the report")
	flag.BoolVar(&c.syscalls, "syscalls", false, "after the rounds, count each proxy's system calls per operation with strace (syscalls.go)")
	rerender := flag.Bool("rerender", false, "only rewrite the report from -out's runs.jsonl and meta.json")
	flag.Parse()
	c.scenarios = splitList(scen)
	c.targets = splitList(targ)
	c.tlsScenarios = splitList(tlsScen)
	c.protoScenarios = splitList(protoScen)
	c.maxRounds = max(c.maxRounds, c.rounds)
	if *rerender {
		if err := rerenderReport(c); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			os.Exit(1)
		}
		return
	}
	if c.bin == "" || c.work == "" {
		fmt.Fprintln(os.Stderr, "compare: -bin and -work are required (run bench/compare.sh)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// proc is a process this program started; it is stopped by its PID.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	kids []int // descendants seen while it ran (nginx's worker)
}

// registry records every PID started, in a file compare.sh reads on exit
// to stop whatever a crash of this program left behind.
type registry struct {
	path  string
	procs []*proc
}

func (r *registry) start(name, logPath string, env []string, argv ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	r.procs = append(r.procs, p)
	r.save()
	return p, nil
}

func (r *registry) save() {
	var b strings.Builder
	for _, p := range r.procs {
		fmt.Fprintln(&b, p.cmd.Process.Pid)
		for _, k := range p.kids {
			fmt.Fprintln(&b, k)
		}
	}
	_ = os.WriteFile(r.path, []byte(b.String()), 0o644)
}

// noteKids remembers p's descendants so they can be stopped by PID too.
func (r *registry) noteKids(p *proc) {
	p.kids = tree(p.cmd.Process.Pid)[1:]
	r.save()
}

// stop ends p: SIGTERM, then SIGKILL after 10 s; then any descendant that
// outlived it.
func (r *registry) stop(p *proc) {
	if p == nil {
		return
	}
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	for _, k := range p.kids {
		if alive(k) {
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
	}
	for i, q := range r.procs {
		if q == p {
			r.procs = append(r.procs[:i], r.procs[i+1:]...)
			break
		}
	}
	r.save()
}

func (r *registry) stopAll() {
	for len(r.procs) > 0 {
		r.stop(r.procs[len(r.procs)-1])
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening polls addr until it accepts a connection.
func waitListening(ctx context.Context, addr string, p *proc) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if p != nil {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited at start (see its log)", p.name)
			default:
			}
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: nothing listens on %s", p.name, addr)
}

// target is one thing the load goes through.
type target struct {
	name   string
	listen string // 127.0.0.1:port; the backend's for direct
	tls    bool   // dialled at wss:// with -insecure
	argv   []string
	env    []string
	p      *proc
}

// tlsTarget is wsgate behind its own TLS listener: the client side is
// wss://, the upstream side the same plain ws:// backend as every target.
// nginx-tls, haproxy-tls and caddy-tls are its peers.
const tlsTarget = "wsgate-tls"

// protoTarget is bench/epollproto, the event-driven prototype of issue 23:
// a measurement, not a proxy users could run. It is not a peer: it has no
// best-peer row.
const protoTarget = "epoll-proto"

// onePSuffix makes a Go target (wsgate, wsgate-tls, caddy, caddy-tls) run
// with GOMAXPROCS=1: one worker, as nginx and HAProxy are configured, where
// the plain name runs with Go's default (every CPU).
const onePSuffix = "-1p"

// baseTarget is target t without its GOMAXPROCS=1 suffix: the proxy and
// config it runs.
func baseTarget(t string) string { return strings.TrimSuffix(t, onePSuffix) }

// isTLS reports whether target t terminates TLS on the client side.
func isTLS(t string) bool { return strings.HasSuffix(baseTarget(t), "-tls") }

// ratioBase is the target t's figures are divided by in its round: nginx
// for the plain targets, nginx-tls for the TLS ones.
func ratioBase(t string) string {
	if isTLS(t) {
		return "nginx-tls"
	}
	return "nginx"
}

// informational reports whether target t is left out of the comparisons
// of plain ws:// proxies (the chart, the headroom check, the plain
// best-peer rows): the TLS targets, which have their own, and epoll-proto,
// a prototype rather than a peer.
func informational(t string) bool { return isTLS(t) || t == protoTarget }

// runsScenario reports whether target t runs scenario s: every target
// runs every scenario, except the TLS ones, which run c.tlsScenarios, and
// epoll-proto, which runs c.protoScenarios.
func runsScenario(c config, s, t string) bool {
	switch {
	case isTLS(t):
		return slices.Contains(c.tlsScenarios, s)
	case t == protoTarget:
		return slices.Contains(c.protoScenarios, s)
	}
	return true
}

func (t *target) direct() bool { return t.argv == nil }

type bench struct {
	c       config
	reg     registry
	backend *proc
	bAddr   string
	targets []*target
	began   time.Time
	waited  time.Duration // in waitQuiet, all runs together
}

func run(ctx context.Context, c config) error {
	for _, d := range []string{c.work, c.out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	b := &bench{c: c, reg: registry{path: filepath.Join(c.work, "pids")}}
	defer b.reg.stopAll()

	port, err := freePort()
	if err != nil {
		return err
	}
	b.bAddr = fmt.Sprintf("127.0.0.1:%d", port)
	b.backend, err = b.reg.start("backend", filepath.Join(c.work, "backend.log"), nil,
		filepath.Join(c.bin, "wsbench"), "backend", "-listen", b.bAddr)
	if err != nil {
		return err
	}
	if err := waitListening(ctx, b.bAddr, b.backend); err != nil {
		return err
	}
	for _, name := range c.targets {
		t, err := b.newTarget(name)
		if err != nil {
			return err
		}
		b.targets = append(b.targets, t)
		if err := b.startTarget(ctx, t); err != nil {
			return err
		}
	}
	env := environment(c, b)
	fmt.Fprintf(os.Stderr, "compare: backend %s; targets %s\n", b.bAddr, strings.Join(c.targets, " "))

	var runs []*runRecord
	jl, err := os.Create(filepath.Join(c.out, "runs.jsonl"))
	if err != nil {
		return err
	}
	defer jl.Close()
	began := time.Now()
	b.began = began
	var roundTime time.Duration
	for round := 1; round <= c.maxRounds; round++ {
		todo := c.scenarios
		if round > c.rounds {
			todo = shortScenarios(c, runs)
			if len(todo) == 0 {
				break
			}
			// An extra round only for what is still short, and only if it
			// fits in the budget at the pace of the full rounds.
			est := roundTime * time.Duration(len(todo)) / time.Duration(len(c.scenarios))
			if time.Since(began)+est > c.budget {
				fmt.Fprintf(os.Stderr, "compare: budget reached; %s still short of %d kept runs\n", strings.Join(todo, ", "), c.rounds)
				break
			}
		}
		rstart := time.Now()
		for _, s := range todo {
			for _, t := range b.targets {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !runsScenario(c, s, t.name) {
					continue
				}
				r, err := b.runOne(ctx, round, s, t)
				if err != nil {
					return err
				}
				runs = append(runs, r)
				line, _ := json.Marshal(r)
				fmt.Fprintln(jl, string(line))
				fmt.Fprintf(os.Stderr, "round %d %-15s %-10s %12.1f %-12s noise %4.1f%% %s\n",
					round, s, t.name, r.Value, r.Unit, 100*r.Noise, r.status())
			}
		}
		if round <= c.rounds {
			roundTime = time.Since(rstart)
		}
	}
	if c.syscalls {
		if err := b.runSyscalls(ctx); err != nil {
			return err
		}
	} else {
		_ = os.Remove(filepath.Join(c.out, syscallsFile)) // not this run's
	}
	env.Elapsed = time.Since(began).Round(time.Second)
	if err := saveMeta(c, env); err != nil {
		return err
	}
	if err := writeReport(c, env, runs); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "compare: wrote %s and %s in %s\n", c.md, filepath.Join(c.out, "ratios.svg"), env.Elapsed)
	return nil
}

// shortScenarios lists the scenarios where some target has fewer than
// c.rounds kept runs.
func shortScenarios(c config, runs []*runRecord) []string {
	var out []string
	for _, s := range c.scenarios {
		for _, t := range c.targets {
			if !runsScenario(c, s, t) {
				continue
			}
			n := 0
			for _, r := range runs {
				if r.Scenario == s && r.Target == t && r.Kept {
					n++
				}
			}
			if n < c.rounds {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// tmplData fills the config templates; Cert, Key and Bundle (both in one
// file, for HAProxy) only for the TLS targets.
type tmplData struct{ Dir, Listen, Backend, Cert, Key, Bundle string }

func (b *bench) newTarget(name string) (*target, error) {
	t := &target{name: name}
	if name == "direct" {
		t.listen = b.bAddr
		return t, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	t.listen = fmt.Sprintf("127.0.0.1:%d", port)
	dir := filepath.Join(b.c.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if name == protoTarget {
		t.argv = []string{filepath.Join(b.c.bin, "epollproto"), "-listen", t.listen, "-backend", b.bAddr}
		// One event loop, on one P: like nginx's one worker. More Ps
		// would only spin (nanosleep, futex) while the loop waits in
		// epoll_wait.
		t.env = []string{"GOMAXPROCS=1"}
		return t, nil
	}
	base := baseTarget(name)
	if base != name && !strings.HasPrefix(base, "wsgate") && !strings.HasPrefix(base, "caddy") {
		return nil, fmt.Errorf("target %q: only the Go proxies (wsgate, caddy) have a %s variant", name, onePSuffix)
	}
	file := map[string]string{"wsgate": "wsgate.yaml", tlsTarget: "wsgate-tls.yaml", "nginx": "nginx.conf", "nginx-tls": "nginx-tls.conf",
		"haproxy": "haproxy.cfg", "haproxy-tls": "haproxy-tls.cfg", "caddy": "Caddyfile", "caddy-tls": "Caddyfile-tls"}[base]
	if file == "" {
		return nil, fmt.Errorf("unknown target %q", name)
	}
	d := tmplData{Dir: dir, Listen: t.listen, Backend: b.bAddr}
	if isTLS(name) {
		t.tls = true
		if d.Cert, d.Key, d.Bundle, err = selfSigned(dir); err != nil {
			return nil, fmt.Errorf("%s: certificate: %w", name, err)
		}
	}
	cfg := filepath.Join(dir, file)
	if err := render(filepath.Join(b.c.configs, file+".tmpl"), cfg, d); err != nil {
		return nil, err
	}
	if base != name {
		t.env = append(t.env, "GOMAXPROCS=1")
	}
	switch strings.TrimSuffix(base, "-tls") {
	case "wsgate":
		t.argv = []string{filepath.Join(b.c.bin, "wsgate"), "-config", cfg}
	case "nginx":
		t.argv = []string{"nginx", "-c", cfg, "-p", dir + "/", "-g", "daemon off;"}
	case "haproxy":
		t.argv = []string{"haproxy", "-f", cfg, "-db"}
	case "caddy":
		t.argv = []string{"caddy", "run", "--config", cfg, "--adapter", "caddyfile"}
		t.env = append(t.env, "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	}
	return t, nil
}

func render(tmplPath, out string, d tmplData) error {
	tm, err := template.ParseFiles(tmplPath)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	return tm.Execute(f, d)
}

func (b *bench) startTarget(ctx context.Context, t *target) error {
	if t.direct() {
		return nil
	}
	p, err := b.reg.start(t.name, filepath.Join(b.c.work, t.name, "output.log"), t.env, t.argv...)
	if err != nil {
		return err
	}
	t.p = p
	if err := waitListening(ctx, t.listen, p); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond) // nginx forks its worker after binding
	b.reg.noteKids(p)
	return nil
}

// restart gives idle-mem a fresh process: a heap grown by earlier runs
// (Go's, glibc's) would absorb new sessions and hide their cost.
func (b *bench) restart(ctx context.Context, t *target) error {
	if t.direct() {
		return nil
	}
	b.reg.stop(t.p)
	return b.startTarget(ctx, t)
}

// runRecord is one run: wsbench's JSON plus what compare measured around it.
type runRecord struct {
	Round    int    `json:"round"`
	Scenario string `json:"scenario"`
	Target   string `json:"target"`
	result
	WallS      float64 `json:"wall_s"`
	ClientCPUs float64 `json:"client_cpu_s"`
	Noise      float64 `json:"noise"` // share of all CPUs used by other processes
	Steal      float64 `json:"steal"` // share of all CPUs stolen by the hypervisor
	// Others: CPU seconds of the other processes that used at least 1 % of
	// the machine, by command name.
	Others     map[string]float64 `json:"others,omitempty"`
	QuietWaitS float64            `json:"quiet_wait_s"` // waited for a lull before the run
	Kept       bool               `json:"kept"`
	Failed     string             `json:"failed,omitempty"`
	Command    string             `json:"command"`
}

func (r *runRecord) status() string {
	switch {
	case r.Failed != "":
		return "FAILED: " + r.Failed
	case !r.Kept:
		return "discarded (noise)"
	}
	return "kept"
}

// result mirrors the fields of wsbench's JSON line that compare uses.
type result struct {
	Metric            string  `json:"metric"`
	Value             float64 `json:"value"`
	Unit              string  `json:"unit"`
	Ops               int64   `json:"ops"`
	DurationS         float64 `json:"duration_s"`
	P50us             float64 `json:"p50_us,omitempty"`
	P99us             float64 `json:"p99_us,omitempty"`
	P999us            float64 `json:"p999_us,omitempty"`
	GatewayCPUs       float64 `json:"gateway_cpu_s,omitempty"`
	GatewayCPUPerOpUs float64 `json:"gateway_cpu_us_per_op,omitempty"`
	Opened            int     `json:"opened,omitempty"`
	OpenS             float64 `json:"open_s,omitempty"`
	KiBPerSession     float64 `json:"kib_per_session,omitempty"`
	ClosedClean       int     `json:"closed_clean,omitempty"`
	Errors            int64   `json:"errors"`
	FirstError        string  `json:"first_error,omitempty"`
}

func (b *bench) ourPIDs() []int {
	roots := []int{os.Getpid(), b.backend.cmd.Process.Pid}
	for _, t := range b.targets {
		if t.p != nil {
			roots = append(roots, t.p.cmd.Process.Pid)
		}
	}
	return append(tree(roots...), softirqThreads()...)
}

func (b *bench) wsbenchArgs(s string, t *target) []string {
	args := []string{"run", "-scenario", s, "-label", t.name, "-url", "ws://" + t.listen}
	if t.tls {
		args[len(args)-1] = "wss://" + t.listen
		args = append(args, "-insecure") // the self-signed certificate of selfSigned
	}
	if s == "idle-mem" {
		args = append(args, "-sessions", strconv.Itoa(b.c.sessions), "-settle", b.c.settle.String())
	} else {
		args = append(args, "-duration", b.c.duration.String(), "-warmup", b.c.warmup.String())
	}
	if t.p != nil {
		args = append(args, "-pid", strconv.Itoa(t.p.cmd.Process.Pid))
	}
	return args
}

func (b *bench) runOne(ctx context.Context, round int, s string, t *target) (*runRecord, error) {
	if s == "idle-mem" {
		if err := b.restart(ctx, t); err != nil {
			return nil, err
		}
		time.Sleep(500 * time.Millisecond) // let its start-up work finish before the baseline
	}
	args := b.wsbenchArgs(s, t)
	rec := &runRecord{Round: round, Scenario: s, Target: t.name,
		Command: "wsbench " + strings.Join(quoteArgs(args), " ")}

	limit := b.c.warmup + b.c.duration + b.c.settle + 3*time.Minute
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(rctx, filepath.Join(b.c.bin, "wsbench"), args...)
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}

	ours := b.ourPIDs()
	// Waiting for a lull is capped at a tenth of the budget in all, so a
	// machine that is never quiet does not stretch the comparison.
	if b.c.quietWait > 0 && b.waited < b.c.budget/10 {
		w := b.waitQuiet(ctx, ours)
		b.waited += w
		rec.QuietWaitS = w.Seconds()
	}
	snap0 := snapshot()
	busy0, steal0 := busyTicks()
	ours0 := cpuTicks(ours)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var line []byte
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line = append(line[:0], sc.Bytes()...)
	}
	werr := cmd.Wait()
	wall := time.Since(t0)
	busy1, steal1 := busyTicks()
	ours1 := cpuTicks(ours)
	snap1 := snapshot()

	rec.WallS = wall.Seconds()
	if cmd.ProcessState != nil {
		rec.ClientCPUs = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	other := float64(busy1-busy0-(ours1-ours0))/clockTick - rec.ClientCPUs
	capacity := wall.Seconds() * float64(runtime.NumCPU())
	rec.Noise = max(0, other/capacity)
	rec.Steal = float64(steal1-steal0) / clockTick / capacity
	mine := map[int]bool{cmd.Process.Pid: true}
	for _, p := range ours {
		mine[p] = true
	}
	rec.Others = map[string]float64{}
	for comm, sec := range topOthers(snap0, snap1, mine) {
		if sec/capacity >= 0.01 {
			rec.Others[comm] = sec
		}
	}

	switch {
	case werr != nil:
		rec.Failed = strings.TrimSpace(werr.Error() + " " + lastLine(stderr.String()))
	case json.Unmarshal(line, &rec.result) != nil:
		rec.Failed = "no JSON output"
	case rec.Errors > 0:
		rec.Failed = fmt.Sprintf("%d errors, first: %s", rec.Errors, rec.FirstError)
	}
	if rec.Failed != "" && t.p != nil {
		select {
		case <-t.p.done:
			// It died: bring it back for the next run, and say so.
			rec.Failed += " (target exited; restarted)"
			if err := b.startTarget(ctx, t); err != nil {
				return nil, err
			}
		default:
		}
	}
	rec.Kept = rec.Failed == "" && rec.Noise <= b.c.noise
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil, ctx.Err()
	}
	return rec, nil
}

// waitQuiet delays a run, up to -quiet-wait, until other processes have
// used at most -noise of the machine for half a second: the noise on this
// machine comes in bursts (test suites), and a run started in a lull is
// more likely to be kept.
func (b *bench) waitQuiet(ctx context.Context, ours []int) time.Duration {
	start := time.Now()
	for time.Since(start) < b.c.quietWait && ctx.Err() == nil {
		busy0, _ := busyTicks()
		ours0 := cpuTicks(ours)
		t0 := time.Now()
		time.Sleep(500 * time.Millisecond)
		busy1, _ := busyTicks()
		other := float64(busy1-busy0-(cpuTicks(ours)-ours0)) / clockTick
		if other/(time.Since(t0).Seconds()*float64(runtime.NumCPU())) <= b.c.noise {
			break
		}
	}
	return time.Since(start)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " ;'\"") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

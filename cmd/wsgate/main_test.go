//go:build linux

package main

// End-to-end tests of the wsgate binary (docs/operations.md "Command line"; README "Quick start"):
// the binary is built once and run as a user would run it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"wsgate/internal/testutil"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// binary is the wsgate binary built by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsgate-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "wsgate")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	build := exec.Command(goTool, "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building wsgate:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// wsgate runs the binary to completion (at most 10s) and returns its exit
// code and output.
func wsgate(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("wsgate %s did not finish within 10s", strings.Join(args, " "))
	}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		return ee.ExitCode(), o.String(), e.String()
	}
	return 0, o.String(), e.String()
}

// TestValidateReportsEveryProblem: `validate` prints every problem as
// "file:line: key: message" and exits 1.
func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want []string // "line: key" of each problem, in order
	}{
		{"unknown_key.yaml", []string{"2: server.listn", "7: routes[0].colour"}},
		{"bad_duration.yaml", []string{"2: defaults.idle_timeout", "7: routes[0].close_timeout"}},
		{"bad_size.yaml", []string{"2: server.max_header_bytes", "6: routes[0].max_message_bytes"}},
		{"bad_rate.yaml", []string{"5: routes[0].rate_limit.messages.rate", "6: routes[0].rate_limit.bytes.rate"}},
		{"bad_upstream.yaml", []string{"4: routes[0].upstreams[0]", "5: routes[0].upstreams[1]", "6: routes[0].upstreams[2]"}},
		{"dup_name.yaml", []string{"5: routes[1].name"}},
		{"dup_hostpath.yaml", []string{"8: routes[1].path"}},
		{"many.yaml", []string{"3: server.listn", "4: server.max_header_bytes", "6: defaults.idle_timeout",
			"10: routes[0].upstreams[0]", "11: routes[0].rate_limit.messages.rate", "12: routes[1].name", "13: routes[1].path"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join("testdata", tt.file)
			code, stdout, stderr := wsgate(t, "validate", "-config", path)
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			var got []string
			re := regexp.MustCompile(`^` + regexp.QuoteMeta(path) + `:(\d+): (\S+): \S`)
			for _, l := range strings.Split(strings.TrimSpace(stdout+stderr), "\n") {
				m := re.FindStringSubmatch(l)
				if m == nil {
					t.Errorf("not a file:line: key: problem line: %q", l)
					continue
				}
				got = append(got, m[1]+": "+m[2])
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems reported:\n%s\nwant:\n%s\noutput:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"), stdout+stderr)
			}
		})
	}
}

// TestValidateExample: the shipped example is valid.
func TestValidateExample(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := wsgate(t, "validate", "-config", "../../config.example.yaml")
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "OK") {
		t.Errorf("stdout %q does not say OK", stdout)
	}
}

// TestCLIUsage: version, unknown commands and missing flags.
func TestCLIUsage(t *testing.T) {
	t.Parallel()
	code, stdout, _ := wsgate(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "wsgate ") || len(strings.TrimSpace(stdout)) <= len("wsgate") {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
	code, _, stderr := wsgate(t, "frobnicate")
	if code != 2 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q; want 2", code, stderr)
	}
	for _, args := range [][]string{{"validate"}, {"run"}, {}, {"validate", "-config"}, {"validate", "-nope", "x"}} {
		if code, _, stderr := wsgate(t, args...); code != 2 {
			t.Errorf("wsgate %q: exit %d (%s), want 2", args, code, stderr)
		}
	}
	code, _, stderr = wsgate(t, "validate", "-config", "testdata/does-not-exist.yaml")
	if code != 1 || !strings.HasPrefix(stderr, "testdata/does-not-exist.yaml: ") {
		t.Errorf("missing file: exit %d, stderr %q; want 1 and the file named", code, stderr)
	}
}

// gatewayProc is a running wsgate.
type gatewayProc struct {
	cmd  *exec.Cmd
	addr string // the ws:// listener, as the process logged it
	out  *syncWriter
	done chan struct{}
	err  error
}

// start runs wsgate with args (its config listening on port 0) and waits
// until it logs its ws:// listener's address.
func start(t *testing.T, args ...string) *gatewayProc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	out := &syncWriter{}
	cmd.Stderr, cmd.Stdout = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &gatewayProc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("wsgate output:\n%s", out.String())
		}
	})
	p.addr = p.logged(t, "listening (ws://)")
	return p
}

// logged waits up to 10s for a log line with message msg and returns its
// "listen" field.
func (p *gatewayProc) logged(t *testing.T, msg string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range strings.Split(p.out.String(), "\n") {
			var e struct{ Message, Listen string }
			if json.Unmarshal([]byte(l), &e) == nil && e.Message == msg && e.Listen != "" {
				return e.Listen
			}
		}
		select {
		case <-p.done:
			t.Fatalf("wsgate exited before logging %q: %v", msg, p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate did not log %q within 10s", msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncWriter collects output written from another goroutine.
type syncWriter = testutil.LogBuffer

// wait waits up to d for the process to exit and returns its exit code.
func (p *gatewayProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("wsgate still running %v after the signal", d)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatal(p.err)
	return -1
}

// TestRunExample is the README's quick start: `wsgate -config
// config.example.yaml` serves ws://…/echo (here on free ports), which
// echoes; SIGTERM closes the open session with shutdown_close_code (1001)
// and the process exits 0 within a few seconds.
func TestRunExample(t *testing.T) {
	t.Parallel()
	example, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Port 0: the process picks free ports and logs them.
	cfg := string(example)
	for old, new := range map[string]string{
		`listen: ":8080"`:                `listen: "127.0.0.1:0"`,
		`admin_listen: "127.0.0.1:9090"`: `admin_listen: "localhost:0"`, // not "127.0.0.1:0": validate calls that a duplicate
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("config.example.yaml has no %s", old)
		}
		cfg = strings.Replace(cfg, old, new, 1)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "-config", path) // `run` is the default subcommand
	addr := p.addr

	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + p.logged(t, "admin listening") + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}

	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("ws://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, msg := range []string{"hello", strings.Repeat("x", 70000)} {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, got, err := c.ReadMessage()
		if err != nil || typ != websocket.TextMessage || string(got) != msg {
			t.Fatalf("echo of %d bytes: type %d, %d bytes, err %v", len(msg), typ, len(got), err)
		}
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = c.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseGoingAway {
		t.Errorf("after SIGTERM the client got %v, want close 1001", err)
	}
	// gorilla has answered the Close; hang up like a client that is done
	// (the gateway waits for our FIN up to close_timeout, 5s here).
	c.Close()
	start := time.Now()
	if code := p.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("exit took %v after the session ended", d)
	}
	// The listener is gone.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("still accepting on %s after exit", addr)
	}
}

// TestUpstreamDialOutOfFDs: when the gateway cannot open a socket toward
// the upstream (EMFILE), the client gets 503 with Retry-After, and nothing
// reaches the upstream. The binary's RLIMIT_NOFILE is lowered with
// prlimit(2) so that exactly one descriptor is left: the client's.
func TestUpstreamDialOutOfFDs(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc and prlimit(2)")
	}
	var upstreamConns atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			typ, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, p); err != nil {
				return
			}
		}
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			upstreamConns.Add(1)
		}
	}
	up.Start()
	defer up.Close()

	cfg := fmt.Sprintf(`server:
  listen: "127.0.0.1:0"
  admin_listen: ""
  shutdown_grace: 2s
  close_spread: 0s
routes:
  - name: up
    path: /up
    upstreams: [ws://%s]
`, up.Listener.Addr().String())
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "run", "-config", path)
	addr, pid := p.addr, p.cmd.Process.Pid

	// One full session first, so that whatever the process opens lazily is
	// open before the descriptors are counted.
	session := func() error {
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
		c, _, err := d.Dial("ws://"+addr+"/up", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.NetConn().SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
			return err
		}
		_, got, err := c.ReadMessage()
		if err == nil && string(got) != "hi" {
			err = fmt.Errorf("echo %q", got)
		}
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
		_, _, _ = c.ReadMessage()
		return err
	}
	if err := session(); err != nil {
		t.Fatal(err)
	}
	fds := stableFDs(t, pid)

	// The lowest limit that leaves exactly one free descriptor number.
	limit := 0
	for l := 1; ; l++ {
		used := 0
		for _, fd := range fds {
			if fd < l {
				used++
			}
		}
		if l-used == 1 {
			limit = l
			break
		}
	}
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	lowered := unix.Rlimit{Cur: uint64(limit), Max: old.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lowered, nil); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	before := upstreamConns.Load()

	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /up HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer with one descriptor left (fds %v, limit %d): %v", fds, limit, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || string(body) != "gateway out of file descriptors\n" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("got %d %q Retry-After %q, want 503 \"gateway out of file descriptors\" with Retry-After",
			resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if n := upstreamConns.Load() - before; n != 0 {
		t.Errorf("the upstream got %d connections", n)
	}
	c.Close()

	// With descriptors back, the same route works: the 503 was the limit,
	// and the upstream was not marked down for it.
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil); err != nil {
		t.Fatal(err)
	}
	if err := session(); err != nil {
		t.Fatalf("after restoring the limit: %v", err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 5*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// stableFDs returns the open descriptor numbers of pid once the set has
// not changed for 300ms.
func stableFDs(t *testing.T, pid int) []int {
	t.Helper()
	read := func() []int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Skipf("cannot list descriptors: %v", err)
		}
		var fds []int
		for _, e := range ents {
			if n, err := strconv.Atoi(e.Name()); err == nil {
				fds = append(fds, n)
			}
		}
		return fds
	}
	deadline := time.Now().Add(5 * time.Second)
	prev, since := fmt.Sprint(read()), time.Now()
	for time.Since(since) < 300*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("descriptor set never settled")
		}
		time.Sleep(20 * time.Millisecond)
		if cur := fmt.Sprint(read()); cur != prev {
			prev, since = cur, time.Now()
		}
	}
	return read()
}

// echoConfig writes a config serving builtin:echo on /echo at addr, with
// extra lines appended to the server block.
func echoConfig(t *testing.T, addr string, server ...string) string {
	t.Helper()
	cfg := fmt.Sprintf("server:\n  listen: %q\n  admin_listen: \"\"\n", addr)
	for _, l := range server {
		cfg += "  " + l + "\n"
	}
	cfg += "routes:\n  - name: demo\n    path: /echo\n    upstreams: [builtin:echo]\n"
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func echoOnce(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
		t.Fatalf("echo %q: got %q, %v", msg, got, err)
	}
}

// TestSIGHUPKeepsServing: SIGHUP must not kill the gateway (its default
// action would): open sessions keep running and new ones are accepted.
func TestSIGHUPKeepsServing(t *testing.T) {
	t.Parallel()
	p := start(t, "run", "-config", echoConfig(t, "127.0.0.1:0", "shutdown_grace: 3s", "close_spread: 0s"))
	addr := p.addr
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("ws://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "before")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case <-p.done:
		t.Fatalf("wsgate exited on SIGHUP: %v", p.err)
	default:
	}
	echoOnce(t, c, "after")
	c2, _, err := d.Dial("ws://"+addr+"/echo", nil)
	if err != nil {
		t.Fatalf("new session after SIGHUP: %v", err)
	}
	echoOnce(t, c2, "new")
	c2.Close()
	c.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 5*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// TestSecondSignalExitsAtOnce: while a graceful shutdown waits for a client
// that does not answer its Close, a second SIGTERM ends the process now.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	path := echoConfig(t, "127.0.0.1:0", "shutdown_grace: 20s", "close_spread: 0s")
	// close_timeout long enough that only the second signal can end it.
	cfg, _ := os.ReadFile(path)
	cfg = append([]byte("defaults:\n  close_timeout: 15s\n"), cfg...)
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "-config", path)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("ws://"+p.addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "x") // and then never read again: the Close goes unanswered
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	select {
	case <-p.done:
		t.Fatalf("exited before the session ended: %v", p.err)
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 2*time.Second); code == 0 {
		t.Errorf("exit 0 after a forced exit, want non-zero")
	}
}

// TestRunFailures: `run` exits 1 on an invalid config (printing the
// problems) and when it cannot listen.
func TestRunFailures(t *testing.T) {
	t.Parallel()
	code, _, stderr := wsgate(t, "run", "-config", "testdata/dup_name.yaml")
	if code != 1 || !strings.Contains(stderr, "testdata/dup_name.yaml:5: routes[1].name") {
		t.Errorf("invalid config: exit %d, stderr %q", code, stderr)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	code, _, stderr = wsgate(t, "run", "-config", echoConfig(t, busy.Addr().String()))
	if code != 1 || !strings.Contains(stderr, "cannot listen") {
		t.Errorf("port in use: exit %d, stderr %q", code, stderr)
	}
}

//go:build linux

package main

// The gateway at its open-file limit and with many sessions (issue 12):
// the real binary, its descriptor limit lowered with prlimit(2), and 9,000
// sessions through one process to a wsbench backend in another. Clients are
// raw TCP connections with hand-written frames and no goroutine of their
// own: 9,000 of them stay cheap, under the race detector too.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"wsgate/frame"
	"wsgate/handshake"
	"wsgate/internal/listen"
	"wsgate/internal/procfs"
)

// rawKey is the Sec-WebSocket-Key of every raw handshake (RFC 6455 §1.3's
// example: the gateway only needs a valid one).
const rawKey = "dGhlIHNhbXBsZSBub25jZQ=="

// brPool holds the readers raw handshakes parse their answers with: a
// session keeps only its net.Conn.
var brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1024) }}

// handshakeResult is how a raw handshake ended.
type handshakeResult struct {
	conn   net.Conn // the session, on 101
	status int      // 0: no answer within the deadline (or no connection)
	body   string
	err    error
}

// rawDialer opens raw client connections, spread over source addresses
// 127.0.0.2… when sources > 0 (one source address has ~28,000 ports).
type rawDialer struct {
	addr    string
	sources int
	next    atomic.Uint32
}

func (d *rawDialer) dial(timeout time.Duration) (net.Conn, error) {
	nd := net.Dialer{Timeout: timeout}
	if d.sources > 0 {
		i := d.next.Add(1) % uint32(d.sources)
		nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}
		// IP_BIND_ADDRESS_NO_PORT (24): the port is chosen at connect, for
		// this 4-tuple, not at bind for the source address.
		nd.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, 24, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return nd.Dial("tcp", d.addr)
}

// handshake opens a connection and upgrades it on path, waiting at most
// timeout for the answer.
func (d *rawDialer) handshake(path string, timeout time.Duration) handshakeResult {
	c, err := d.dial(timeout)
	if err != nil {
		return handshakeResult{err: err}
	}
	return upgradeRaw(c, d.addr, path, timeout)
}

// upgradeRaw sends an upgrade request on c and reads the answer. On
// anything but a 101, c is closed.
func upgradeRaw(c net.Conn, host, path string, timeout time.Duration) handshakeResult {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host, rawKey); err != nil {
		c.Close()
		return handshakeResult{err: err}
	}
	return readUpgrade(c)
}

// readUpgrade reads the answer to an upgrade request already sent on c,
// within c's deadline.
func readUpgrade(c net.Conn) handshakeResult {
	br := brPool.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() {
		br.Reset(nil)
		brPool.Put(br)
	}()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return handshakeResult{err: err}
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		c.Close()
		return handshakeResult{status: resp.StatusCode, body: string(b)}
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != handshake.AcceptKey(rawKey) {
		c.Close()
		return handshakeResult{status: 101, err: fmt.Errorf("Sec-WebSocket-Accept %q", got)}
	}
	if br.Buffered() > 0 {
		c.Close()
		return handshakeResult{status: 101, err: errors.New("bytes after the 101 before any frame was sent")}
	}
	_ = c.SetDeadline(time.Time{})
	return handshakeResult{conn: c, status: 101}
}

// readFrame reads one whole frame from the server (unmasked) into buf,
// without buffering past it.
func readFrame(c net.Conn, buf []byte) (frame.Opcode, []byte, error) {
	var h [10]byte
	if _, err := io.ReadFull(c, h[:2]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("masked frame from the server")
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(c, h[2:4]); err != nil {
			return 0, nil, err
		}
		n = int(h[2])<<8 | int(h[3])
	case 127:
		return 0, nil, errors.New("unexpectedly long frame")
	}
	if n > len(buf) {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	if _, err := io.ReadFull(c, buf[:n]); err != nil {
		return 0, nil, err
	}
	return frame.Opcode(h[0] & 0x0f), buf[:n], nil
}

// rawEcho sends msg as a masked text frame and checks that it comes back.
func rawEcho(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	var out [frame.MaxHeaderSize + 125]byte
	w := frame.AppendFrame(out[:0], frame.Header{Fin: true, Opcode: frame.OpText, Masked: true, Key: frame.NewKey()}, []byte(msg))
	if _, err := c.Write(w); err != nil {
		return err
	}
	var in [256]byte
	op, p, err := readFrame(c, in[:])
	if err != nil {
		return fmt.Errorf("echo of %q: %v", msg, err)
	}
	if op != frame.OpText || string(p) != msg {
		return fmt.Errorf("echo of %q: got opcode %d %q", msg, op, p)
	}
	return nil
}

// rawClose closes a session cleanly (RFC 6455 §7.1.2): Close 1000, the
// gateway's Close back, then its FIN, and reports anything else.
func rawClose(c net.Conn) error {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var out [16]byte
	w := frame.AppendFrame(out[:0], frame.Header{Fin: true, Opcode: frame.OpClose, Masked: true, Key: frame.NewKey()},
		frame.AppendClose(nil, frame.CloseNormal, ""))
	if _, err := c.Write(w); err != nil {
		return err
	}
	var in [128]byte
	op, p, err := readFrame(c, in[:])
	if err != nil {
		return fmt.Errorf("waiting for the Close: %v", err)
	}
	if code, _, _ := frame.ParseClose(p); op != frame.OpClose || code != frame.CloseNormal {
		return fmt.Errorf("got opcode %d %q instead of Close 1000", op, p)
	}
	if n, err := c.Read(in[:]); n != 0 || err != io.EOF {
		return fmt.Errorf("after the Close: %d bytes, %v; want EOF", n, err)
	}
	return nil
}

// cpuShare is the CPU time pid used during d (user+system), as a share of
// one core.
func cpuShare(pid int, d time.Duration) float64 {
	t0, c0 := time.Now(), procfs.CPUTicks([]int{pid})
	time.Sleep(d)
	c1, el := procfs.CPUTicks([]int{pid}), time.Since(t0)
	return float64(c1-c0) / procfs.ClockTick / el.Seconds()
}

// gorillaEchoUpstream is a WebSocket echo server in this process.
func gorillaEchoUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, p); err != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestStartWarnsOpenFileLimit: `wsgate run` warns, naming the numbers, when
// its open-file limit cannot hold max_connections sessions.
func TestStartWarnsOpenFileLimit(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	p := start(t, "run", "-config", echoConfig(t, "127.0.0.1:0", "max_connections: 50000000", "shutdown_grace: 2s", "close_spread: 0s"))
	var lim unix.Rlimit
	if err := unix.Prlimit(p.cmd.Process.Pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	lines := p.logLines(`the open-file limit cannot hold max_connections sessions: beyond sessions_capacity, handshakes get 503 or wait to be accepted; raise LimitNOFILE / ulimit -n or lower max_connections`)
	if len(lines) != 1 {
		t.Fatalf("%d open-file warnings, want 1:\n%s", len(lines), p.out.String())
	}
	l := lines[0]
	want := map[string]any{"level": "warn", "event": "open_file_limit", "open_files_limit": float64(lim.Cur), "open_files_hard_limit": float64(lim.Max),
		"max_connections": float64(50000000), "sessions_capacity": float64(listen.SessionCapacity(lim.Cur))}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("warning field %s = %v, want %v", k, l[k], v)
		}
	}
	// Go raised the soft limit to (one below) the hard one at start.
	if lim.Max > 1 && lim.Cur < lim.Max-1 {
		t.Errorf("soft limit %d, hard %d: not raised at start", lim.Cur, lim.Max)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 5*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// TestAtTheOpenFileLimit drives the binary to its descriptor limit (lowered
// to leave room for about 100 sessions) and checks issue 12's graceful
// behaviour: a handshake whose upstream dial finds no descriptor gets 503;
// with none left for accept, connections wait in the backlog while the
// accept loop backs off (the gateway's CPU stays low, no net/http retry
// lines); each condition is logged a bounded number of times; sessions
// opened before the limit still echo; and once half of them close, the
// waiting connection and new handshakes get their 101 (recovery without a
// restart).
func TestAtTheOpenFileLimit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc and prlimit(2)")
	}
	up := gorillaEchoUpstream(t)
	p := startOneRoute(t, "up", up, `admin_listen: ""`, "handshake_timeout: 60s", "shutdown_grace: 2s")
	pid := p.cmd.Process.Pid
	d := &rawDialer{addr: p.addr}
	t0 := time.Now()

	// One session first, so that what the process opens lazily is open.
	if r := d.handshake("/up", 5*time.Second); r.conn == nil {
		t.Fatalf("first handshake: %d %q %v", r.status, r.body, r.err)
	} else if err := rawEcho(r.conn, "warm"); err != nil {
		t.Fatal(err)
	} else if err := rawClose(r.conn); err != nil {
		t.Fatal(err)
	}
	fds := stableFDs(t, pid)
	// The lowest limit that leaves 2*sessions+1 descriptor numbers free: the
	// handshake after the last session that fits gets the odd one for its
	// client connection, and none for its upstream.
	const fit = 100
	limit := 0
	for l := 1; limit == 0; l++ {
		used := 0
		for _, fd := range fds {
			if fd < l {
				used++
			}
		}
		if l-used == 2*fit+1 {
			limit = l
		}
	}
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(limit), Max: old.Max}, nil); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	t.Logf("open descriptors %d, limit lowered to %d", len(fds), limit)

	// Sessions until a handshake fails.
	var sessions []net.Conn
	defer func() {
		for _, c := range sessions {
			c.Close()
		}
	}()
	var first handshakeResult
	for len(sessions) <= 2*fit {
		r := d.handshake("/up", 3*time.Second)
		if r.conn == nil {
			first = r
			break
		}
		if err := rawEcho(r.conn, "s"+strconv.Itoa(len(sessions))); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, r.conn)
	}
	t.Logf("%d sessions before the limit; the next handshake: %d %q %v", len(sessions), first.status, first.body, first.err)
	if len(sessions) != fit {
		t.Errorf("%d sessions fit, want %d", len(sessions), fit)
	}
	if first.status != 503 || first.body != "gateway out of file descriptors\n" {
		t.Errorf("handshake at the limit: %d %q %v, want 503 \"gateway out of file descriptors\"", first.status, first.body, first.err)
	}
	// More of them: each is answered 503 (and logged as a rejection), the
	// condition is not logged again.
	const more = 20
	for i := range more {
		if r := d.handshake("/up", 5*time.Second); r.status != 503 {
			t.Errorf("handshake %d at the limit: %d %q %v, want 503", i, r.status, r.body, r.err)
		}
	}

	// A connection that sends nothing takes the last descriptor: the next
	// one waits in the listen backlog, accept(2) failing with EMFILE.
	hog, err := d.dial(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer hog.Close()
	time.Sleep(200 * time.Millisecond)
	waiting, err := d.dial(time.Second)
	if err != nil {
		t.Fatalf("connecting at the limit: %v (the kernel should queue it)", err)
	}
	defer waiting.Close()
	fmt.Fprintf(waiting, "GET /up HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", p.addr, rawKey)
	// Out of descriptors: not spinning. (An accept retried without a pause
	// takes a whole core; so does a relay that retries something that needs
	// a descriptor.)
	time.Sleep(300 * time.Millisecond)
	cpu := cpuShare(pid, 1500*time.Millisecond)
	t.Logf("gateway CPU at the limit: %.1f%% of a core", 100*cpu)
	if cpu > 0.3 {
		t.Errorf("gateway used %.0f%% of a core while out of descriptors: something spins", 100*cpu)
	}
	_ = waiting.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := waiting.Read(make([]byte, 1)); n != 0 || !isTimeoutErr(err) {
		t.Fatalf("a connection beyond the limit got %d bytes, %v; want no answer yet", n, err)
	}
	select {
	case <-p.done:
		t.Fatalf("wsgate exited at the limit: %v", p.err)
	default:
	}

	// The sessions opened before the limit are unharmed.
	for i, c := range sessions {
		if err := rawEcho(c, "still "+strconv.Itoa(i)); err != nil {
			t.Fatalf("session %d at the limit: %v", i, err)
		}
	}

	// Half of them end: the waiting connection is accepted and upgraded,
	// and new handshakes succeed, without a restart (the limit is still
	// lowered).
	for _, c := range sessions[:fit/2] {
		if err := rawClose(c); err != nil {
			t.Errorf("closing a session: %v", err)
		}
	}
	sessions = sessions[fit/2:]
	_ = waiting.SetDeadline(time.Now().Add(5 * time.Second))
	if r := readUpgrade(waiting); r.conn == nil {
		t.Errorf("the connection that waited at the limit: %d %q %v, want 101", r.status, r.body, r.err)
	} else if err := rawEcho(r.conn, "waited"); err != nil {
		t.Error(err)
	}
	for i := range 10 {
		r := d.handshake("/up", 5*time.Second)
		if r.conn == nil {
			t.Fatalf("handshake %d after sessions ended: %d %q %v, want 101", i, r.status, r.body, r.err)
		}
		if err := rawEcho(r.conn, "new "+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, r.conn)
	}
	for i, c := range sessions {
		if err := rawEcho(c, "after "+strconv.Itoa(i)); err != nil {
			t.Fatalf("session %d after recovery: %v", i, err)
		}
	}

	// Each condition logged, at most once per 10s.
	elapsed := time.Since(t0)
	bound := 1 + int(elapsed/(10*time.Second))
	var accept, dial, rejected int
	for _, l := range p.logLines("out of file descriptors: new connections wait in the backlog until sessions end (suppressed: repeats since the last such line)") {
		if l["where"] == "accept" && l["level"] == "warn" {
			accept++
		}
	}
	for _, l := range p.logLines("out of file descriptors: handshakes answered 503 until sessions end (suppressed: repeats since the last such line)") {
		if l["where"] == "upstream_dial" && l["route"] == "up" && l["level"] == "warn" {
			dial++
		}
	}
	for _, l := range p.logLines("handshake rejected") {
		if l["reason"] == "gateway out of file descriptors" {
			rejected++
		}
	}
	t.Logf("over %v: %d accept lines, %d upstream-dial lines, %d rejection lines", elapsed.Round(time.Millisecond), accept, dial, rejected)
	if accept < 1 || accept > bound {
		t.Errorf("%d out_of_fds lines for accept, want 1 to %d", accept, bound)
	}
	if dial < 1 || dial > bound {
		t.Errorf("%d out_of_fds lines for the upstream dial, want 1 to %d", dial, bound)
	}
	if rejected != 1+more {
		t.Errorf("%d rejection lines for the 503s, want %d (one per rejected handshake, docs/operations.md)", rejected, 1+more)
	}
	out := p.out.String()
	if strings.Contains(out, "Accept error") || strings.Contains(out, "panic") {
		t.Errorf("net/http accept retries or a panic in the log:\n%s", out)
	}

	for _, c := range sessions {
		if err := rawClose(c); err != nil {
			t.Errorf("closing a session: %v", err)
		}
	}
	sessions = nil
	hog.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 5*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// wsbenchBinary builds cmd/wsbench once, next to the wsgate binary.
var wsbenchBinary = sync.OnceValues(func() (string, error) {
	path := filepath.Join(filepath.Dir(binary), "wsbench")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	out, err := exec.Command(goTool, "build", "-o", path, "../wsbench").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building wsbench: %v\n%s", err, out)
	}
	return path, nil
})

// startBackend runs `wsbench backend` (an echo upstream) in its own process
// and returns its address.
func startBackend(t *testing.T) string {
	t.Helper()
	bin, err := wsbenchBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "backend", "-listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncWriter
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case l := <-lines:
		addr, ok := strings.CutPrefix(l, "wsbench backend listening on ")
		if !ok {
			t.Fatalf("wsbench backend said %q", l)
		}
		return addr
	case <-done:
		t.Fatalf("wsbench backend exited: %s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("wsbench backend did not start within 10s")
	}
	return ""
}

// sessionsActive scrapes wsgate_sessions_active{route} from /metrics.
func sessionsActive(admin, route string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1, err
	}
	re := regexp.MustCompile(`(?m)^wsgate_sessions_active\{route="` + regexp.QuoteMeta(route) + `"\} (\d+)$`)
	m := re.FindSubmatch(b)
	if m == nil {
		return -1, fmt.Errorf("no wsgate_sessions_active for route %q in /metrics", route)
	}
	return strconv.Atoi(string(m[1]))
}

// openFDs counts pid's open descriptors.
func openFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// TestNineThousandSessions: one gateway process holds 9,000 concurrent
// sessions (18,000 descriptors) to an upstream in another process; a
// sample of them echoes, /metrics counts 9,000 open, and after every one
// is closed cleanly it counts 0 (issue 12).
func TestNineThousandSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("9,000 sessions: not with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc and 127.0.0.0/8 source addresses")
	}
	const n = 9000
	// This process holds the client side.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if need := uint64(n + 1000); lim.Cur < need {
		if lim.Max < need {
			t.Skipf("open-file hard limit %d: cannot hold %d client connections", lim.Max, n)
		}
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	backend := startBackend(t)
	p := startOneRoute(t, "bulk", backend, `admin_listen: "localhost:0"`, "shutdown_grace: 5s")
	admin := p.logged(t, "admin listening")
	pid := p.cmd.Process.Pid
	var glim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &glim); err == nil && listen.SessionCapacity(glim.Cur) < n {
		t.Skipf("the gateway's open-file limit %d cannot hold %d sessions", glim.Cur, n)
	}
	rss0 := procfs.RSSKiB([]int{pid})

	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	d := &rawDialer{addr: p.addr, sources: 8}
	// Bounded concurrency: 24 handshakes at a time, 3 per source address
	// (max_pending_per_ip is 32).
	const workers = 24
	var (
		next    atomic.Int64
		failed  atomic.Int64
		errMu   sync.Mutex
		firstEr string
		wg      sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		if failed.Add(1) == 1 {
			errMu.Lock()
			firstEr = fmt.Sprintf(format, args...)
			errMu.Unlock()
		}
	}
	t0 := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() > 0 {
					return
				}
				r := d.handshake("/bulk", 10*time.Second)
				if r.conn == nil {
					fail("session %d: %d %q %v", i, r.status, r.body, r.err)
					return
				}
				conns[i] = r.conn
			}
		})
	}
	wg.Wait()
	openTook := time.Since(t0)
	if failed.Load() > 0 {
		t.Fatalf("%d handshakes failed; the first: %s", failed.Load(), firstEr)
	}
	rss1 := procfs.RSSKiB([]int{pid})
	t.Logf("%d sessions open in %v (%.0f/s); gateway: %d descriptors, RSS %d MiB (+%.1f KiB/session)",
		n, openTook.Round(time.Millisecond), n/openTook.Seconds(), openFDs(pid), rss1>>10, float64(rss1-rss0)/n)

	// A sample echoes: the first, the last, every 100th.
	for i := 0; i < n; i++ {
		if i%100 != 0 && i != n-1 {
			continue
		}
		if err := rawEcho(conns[i], "sample "+strconv.Itoa(i)); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	if got, err := sessionsActive(admin, "bulk"); err != nil || got != n {
		t.Errorf("wsgate_sessions_active{route=\"bulk\"} = %d (%v), want %d", got, err, n)
	}

	// Every session closes cleanly.
	t1 := time.Now()
	next.Store(0)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c := conns[i]
				conns[i] = nil
				if err := rawClose(c); err != nil {
					fail("closing session %d: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d sessions did not close cleanly; the first: %s", failed.Load(), firstEr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := sessionsActive(admin, "bulk")
		if err == nil && got == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate_sessions_active{route=\"bulk\"} = %d (%v) 30s after every client closed, want 0", got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("closed in %v; gateway: %d descriptors left", time.Since(t1).Round(time.Millisecond), openFDs(pid))
	out := p.out.String()
	for _, bad := range []string{`"level":"error"`, `"event":"out_of_fds"`, "panic"} {
		if strings.Contains(out, bad) {
			t.Errorf("gateway log has %s:\n%s", bad, out)
		}
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// startOneRoute runs the gateway binary on 127.0.0.1 with one route, name at
// /name, to ws://upstream, and the given server: lines; no access log, no
// keepalive pings, no close spread.
func startOneRoute(t *testing.T, name, upstream string, server ...string) *gatewayProc {
	t.Helper()
	cfg := "server:\n  listen: \"127.0.0.1:0\"\n  close_spread: 0s\n"
	for _, l := range server {
		cfg += "  " + l + "\n"
	}
	cfg += fmt.Sprintf("log:\n  access: false\ndefaults:\n  ping_interval: 0s\nroutes:\n  - name: %s\n    path: /%s\n    upstreams: [ws://%s]\n", name, name, upstream)
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, cfg)
	return start(t, "run", "-config", path)
}

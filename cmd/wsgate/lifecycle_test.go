//go:build linux

package main

// End-to-end tests of the lifecycle (issue 9; docs/relay.md "Graceful shutdown",
// "Reload without dropping sessions"): the real binary, driven by SIGTERM,
// SIGHUP and POST /drain, with its clients and its upstreams in this
// process. Timings are small (close_spread 1s, shutdown_grace 3s) and every
// wait is bounded.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Timings of the lifecycle configs.
const (
	lcSpread = time.Second
	lcGrace  = 3 * time.Second
)

// recUpstream is a gorilla/websocket echo upstream that records, for each
// connection, its first message (the test client's id) and the close code
// it received (-1: the connection ended without a Close).
type recUpstream struct {
	url string
	// silent: do not answer a Close, and keep the TCP connection open
	// until the gateway drops it (a peer that never answers).
	silent bool

	mu     sync.Mutex
	conns  int
	ids    map[string]bool // the ids of the clients it served
	closes map[string]int  // client id -> close code received
	order  []int           // close codes in arrival order
	cut    []time.Time     // silent: when the gateway dropped each connection
}

func newRecUpstream(t *testing.T, silent bool) *recUpstream {
	t.Helper()
	u := &recUpstream{silent: silent, ids: map[string]bool{}, closes: map[string]int{}}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		u.mu.Lock()
		u.conns++
		u.mu.Unlock()
		if silent {
			c.SetCloseHandler(func(int, string) error { return nil })
		}
		id := ""
		for {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			typ, p, err := c.ReadMessage()
			if err != nil {
				code := -1
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					code = ce.Code
				}
				u.mu.Lock()
				u.closes[id] = code
				u.order = append(u.order, code)
				u.mu.Unlock()
				if silent && code != -1 {
					// Never answer; wait for the gateway to hang up.
					_, _ = io.Copy(io.Discard, c.NetConn())
					u.mu.Lock()
					u.cut = append(u.cut, time.Now())
					u.mu.Unlock()
				}
				return
			}
			if id == "" {
				id = string(p)
				u.mu.Lock()
				u.ids[id] = true
				u.mu.Unlock()
			}
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := c.WriteMessage(typ, p); err != nil {
				return
			}
		}
	}))
	u.url = "ws://" + srv.Listener.Addr().String()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	return u
}

// codes returns the close codes received so far, in order.
func (u *recUpstream) codes() []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]int(nil), u.order...)
}

// waitCodes waits up to d for n closes and returns them.
func (u *recUpstream) waitCodes(t *testing.T, n int, d time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := u.codes()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream %s: %d connections ended within %v, want %d", u.url, len(got), d, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// has reports whether the upstream served client id.
func (u *recUpstream) has(id string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ids[id]
}

// ended returns the close code client id's upstream connection received,
// and whether it ended.
func (u *recUpstream) ended(id string) (int, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	c, ok := u.closes[id]
	return c, ok
}

// conn counts the connections the upstream accepted.
func (u *recUpstream) connCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns
}

// lcClient is a test client with the id its upstream knows it by.
type lcClient struct {
	id string
	c  *websocket.Conn
}

// dialLC opens a session on path and says its id (echoed back).
func dialLC(addr, path, id string) (*lcClient, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial("ws://"+addr+path, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %v (status %d)", path, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %v", path, err)
	}
	lc := &lcClient{id: id, c: c}
	if err := lc.echo(id); err != nil {
		c.Close()
		return nil, err
	}
	return lc, nil
}

// echo sends msg and checks that it comes back.
func (lc *lcClient) echo(msg string) error {
	_ = lc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := lc.c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		return fmt.Errorf("client %s: write: %v", lc.id, err)
	}
	_ = lc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, got, err := lc.c.ReadMessage()
	if err != nil {
		return fmt.Errorf("client %s: echo of %d bytes: %v", lc.id, len(msg), err)
	}
	if string(got) != msg {
		return fmt.Errorf("client %s: echo of %d bytes came back as %d bytes", lc.id, len(msg), len(got))
	}
	return nil
}

// closeCode reads until the session ends, within d, and returns the close
// code received (-1 for an error that is not a Close), then hangs up.
func (lc *lcClient) closeCode(d time.Duration) (int, error) {
	defer lc.c.Close()
	_ = lc.c.SetReadDeadline(time.Now().Add(d))
	for {
		_, _, err := lc.c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, nil
		}
		return -1, err
	}
}

// openN opens n sessions on path, ids prefix+index, ten handshakes at a time
// (well under server.max_pending_per_ip).
func openN(t *testing.T, addr, path, prefix string, n int) []*lcClient {
	t.Helper()
	out := make([]*lcClient, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			lc, err := dialLC(addr, path, prefix+strconv.Itoa(i))
			if err != nil {
				errs <- err
				return
			}
			out[i] = lc
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, lc := range out {
			lc.c.Close()
		}
	})
	return out
}

// echoAll checks that every client still echoes.
func echoAll(t *testing.T, what string, clients []*lcClient) {
	t.Helper()
	for _, lc := range clients {
		if err := lc.echo("still there " + lc.id); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// expectClosed checks that every client gets a Close with code within d.
func expectClosed(t *testing.T, what string, clients []*lcClient, code int, d time.Duration) {
	t.Helper()
	type res struct {
		id   string
		code int
		err  error
	}
	ch := make(chan res, len(clients))
	for _, lc := range clients {
		go func() {
			c, err := lc.closeCode(d)
			ch <- res{lc.id, c, err}
		}()
	}
	for range clients {
		r := <-ch
		if r.code != code {
			t.Errorf("%s: client %s got close %d (%v), want %d", what, r.id, r.code, r.err, code)
		}
	}
}

// writeFile writes a config file.
func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// logLines returns the process's JSON log lines whose message is msg.
func (p *gatewayProc) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(p.out.String(), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) == nil && e["message"] == msg {
			out = append(out, e)
		}
	}
	return out
}

// waitLog waits up to 5s for the n-th log line with message msg.
func (p *gatewayProc) waitLog(t *testing.T, msg string, n int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if l := p.logLines(msg); len(l) >= n {
			return l[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate did not log %q (%d times) within 5s", msg, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exitedAt returns when (since t0) the process exited, waiting at most d.
func (p *gatewayProc) exitedAt(t *testing.T, t0 time.Time, d time.Duration) (time.Duration, int) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Until(t0.Add(d))):
		t.Fatalf("wsgate still running %v after SIGTERM", d)
	}
	at := time.Since(t0)
	code := 0
	if p.err != nil {
		ee, ok := p.err.(*exec.ExitError)
		if !ok {
			t.Fatal(p.err)
		}
		code = ee.ExitCode()
	}
	return at, code
}

// get does a GET with a keep-alive client and returns the status, whether
// the server closes the connection after it, and the body.
func get(t *testing.T, u string) (int, bool, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Close, string(b)
}

// TestLifecycleDrainSIGTERM: 200 open sessions, SIGTERM. Every client gets
// shutdown_close_code and every upstream 1001; the client closes arrive
// spread over close_spread (spanning at least half of it, no tenth of the
// window holding more than 30%); during the drain the listener still
// answers, 503 with Retry-After and Connection: close, and /readyz says
// 503; the process exits 0 within shutdown_grace + 2s.
func TestLifecycleDrainSIGTERM(t *testing.T) {
	t.Parallel()
	for _, code := range []int{1001, 1012} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			testDrain(t, code)
		})
	}
}

func testDrain(t *testing.T, closeCode int) {
	const n = 200
	up := newRecUpstream(t, false)
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, fmt.Sprintf(`server:
  listen: "127.0.0.1:0"
  admin_listen: "localhost:0"
  shutdown_grace: %v
  close_spread: %v
  shutdown_close_code: %d
log:
  access: false
routes:
  - name: echo
    path: /ws
    upstreams: [%q]
`, lcGrace, lcSpread, closeCode, up.url))
	p := start(t, "-config", path)
	admin := "http://" + p.logged(t, "admin listening")
	clients := openN(t, p.addr, "/ws", "c", n)
	if status, _, body := get(t, admin+"/readyz"); status != 200 {
		t.Fatalf("/readyz before the drain: %d %q", status, body)
	}

	type arrival struct {
		at   time.Duration
		code int
		err  error
	}
	arrivals := make(chan arrival, n)
	t0 := time.Now()
	for _, lc := range clients {
		go func() {
			code, err := lc.closeCode(lcGrace + 2*time.Second)
			arrivals <- arrival{time.Since(t0), code, err}
		}()
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// During the drain: /readyz 503 without keep-alive...
	deadline := time.Now().Add(lcSpread / 2)
	for {
		status, closed, body := get(t, admin+"/readyz")
		if status == 503 {
			if !closed {
				t.Errorf("/readyz while draining: the connection is kept alive (want keep-alives off)")
			}
			if body != "draining\n" {
				t.Errorf("/readyz while draining: %q", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %v after SIGTERM", status, time.Since(t0))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// ...and new handshakes get 503 on the still-open listener.
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if c, resp, err := d.Dial("ws://"+p.addr+"/ws", nil); err == nil {
		c.Close()
		t.Errorf("a handshake during the drain succeeded")
	} else if resp == nil {
		t.Errorf("a handshake during the drain got no answer (%v): the listener must stay open", err)
	} else {
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !resp.Close {
			t.Errorf("a handshake during the drain: %d, Retry-After %q, Connection %q; want 503 with Retry-After and Connection: close",
				resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Values("Connection"))
		}
	}
	duringDrain := time.Since(t0)

	var at []time.Duration
	for range n {
		a := <-arrivals
		if a.code != closeCode {
			t.Errorf("a client got close %d (%v), want %d", a.code, a.err, closeCode)
			continue
		}
		at = append(at, a.at)
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, c := range up.waitCodes(t, n, lcGrace) {
		if c != 1001 {
			t.Fatalf("an upstream got close %d, want 1001 (all: %v)", c, up.codes())
		}
	}
	exit, code := p.exitedAt(t, t0, lcGrace+2*time.Second)
	if code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}

	// The spread: at least half of close_spread, and no tenth of the
	// window holding more than 30% of the closes.
	sort.Slice(at, func(i, j int) bool { return at[i] < at[j] })
	first, last := at[0], at[len(at)-1]
	if span := last - first; span < lcSpread/2 {
		t.Errorf("client closes span %v, want at least %v", span, lcSpread/2)
	}
	var tenths [10]int
	for _, a := range at {
		i := min(int((a-first)*10/lcSpread), 9)
		tenths[i]++
	}
	for i, k := range tenths {
		if k*10 > 3*n {
			t.Errorf("tenth %d of close_spread holds %d of %d closes (over 30%%): %v", i, k, n, tenths)
		}
	}
	if duringDrain > first+lcSpread/2 {
		t.Errorf("the drain checks ran %v after SIGTERM: too late to prove anything", duringDrain)
	}
	t.Logf("shutdown_close_code %d: client closes from %v to %v after SIGTERM (span %v), per tenth %v; exit 0 after %v (limit %v)",
		closeCode, first.Round(time.Millisecond), last.Round(time.Millisecond), (last - first).Round(time.Millisecond),
		tenths, exit.Round(time.Millisecond), lcGrace+2*time.Second)
}

// TestLifecycleShutdownCutsSilentPeers: clients and upstreams that never
// answer the shutdown Close (some clients never even read) hold the drain
// until shutdown_grace, not beyond: they are cut then, and the process
// exits 0 within shutdown_grace + 2s. The clients that never read find the
// Close frame waiting in their socket.
func TestLifecycleShutdownCutsSilentPeers(t *testing.T) {
	t.Parallel()
	const n = 20
	up := newRecUpstream(t, true)
	path := filepath.Join(t.TempDir(), "config.yaml")
	// close_timeout longer than the grace: only the grace can end these.
	writeFile(t, path, fmt.Sprintf(`server:
  listen: "127.0.0.1:0"
  admin_listen: ""
  shutdown_grace: %v
  close_spread: %v
defaults:
  close_timeout: 20s
routes:
  - name: echo
    path: /ws
    upstreams: [%q]
`, lcGrace, lcSpread, up.url))
	p := start(t, "-config", path)
	clients := openN(t, p.addr, "/ws", "s", n)
	readers, deaf := clients[:n/2], clients[n/2:]
	for _, lc := range clients {
		lc.c.SetCloseHandler(func(int, string) error { return nil }) // never answer
	}
	type cut struct {
		code int
		at   time.Duration
		err  error
	}
	cuts := make(chan cut, len(readers))
	t0 := time.Now()
	for _, lc := range readers {
		go func() {
			_ = lc.c.SetReadDeadline(t0.Add(lcGrace + 3*time.Second))
			_, _, err := lc.c.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				cuts <- cut{-1, 0, err}
				return
			}
			// Read on until the gateway hangs up.
			_ = lc.c.NetConn().SetReadDeadline(t0.Add(lcGrace + 3*time.Second))
			_, err = io.Copy(io.Discard, lc.c.NetConn())
			cuts <- cut{ce.Code, time.Since(t0), err}
		}()
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exit, code := p.exitedAt(t, t0, lcGrace+2*time.Second)
	if code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	if exit < lcGrace-100*time.Millisecond {
		t.Errorf("exited %v after SIGTERM, before shutdown_grace (%v): the silent peers were not waited for", exit, lcGrace)
	}
	var latest time.Duration
	for range readers {
		c := <-cuts
		if c.code != 1001 || c.err != nil {
			t.Errorf("a reading client: close %d, then %v; want 1001 then EOF", c.code, c.err)
			continue
		}
		if c.at < lcGrace-100*time.Millisecond || c.at > lcGrace+2*time.Second {
			t.Errorf("a reading client was cut %v after SIGTERM, want at shutdown_grace (%v)", c.at, lcGrace)
		}
		latest = max(latest, c.at)
	}
	// The clients that never read: their Close is in the socket.
	for _, lc := range deaf {
		_ = lc.c.SetReadDeadline(time.Now().Add(time.Second))
		_, _, err := lc.c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 1001 {
			t.Errorf("a client that never read: %v, want its Close 1001 waiting", err)
		}
	}
	for _, c := range up.waitCodes(t, n, time.Second) {
		if c != 1001 {
			t.Errorf("an upstream got %d, want 1001", c)
		}
	}
	up.mu.Lock()
	upCuts := append([]time.Time(nil), up.cut...)
	up.mu.Unlock()
	for _, at := range upCuts {
		if d := at.Sub(t0); d < lcGrace-100*time.Millisecond {
			t.Errorf("an upstream was cut %v after SIGTERM, before shutdown_grace", d)
		}
	}
	t.Logf("silent peers: clients cut by %v after SIGTERM; exit 0 after %v (grace %v, limit %v)",
		latest.Round(time.Millisecond), exit.Round(time.Millisecond), lcGrace, lcGrace+2*time.Second)
}

// TestLifecycleReload: 100 sessions on two routes through four SIGHUPs and
// an admin drain (issue 9's reload acceptance):
//  1. a route added and a limit lowered: all 100 still echo, the new route
//     works, the new cap applies to new sessions only, and a `server:`
//     change is refused with a warning;
//  2. POST /drain?upstream=: exactly that upstream's sessions get 1012
//     (their upstream 1001) and new sessions avoid it;
//  3. a route removed: its sessions get 1012 (upstream 1001), the other
//     route's are untouched;
//  4. a broken config: the error is logged and everything keeps working.
//
// Then SIGTERM closes the rest with the shutdown_close_code in force before
// the reloads (the reloaded one needs a restart).
func TestLifecycleReload(t *testing.T) {
	t.Parallel()
	ua, ub1, ub2 := newRecUpstream(t, false), newRecUpstream(t, false), newRecUpstream(t, false)
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	server := func(code int) string {
		return fmt.Sprintf(`server:
  listen: "127.0.0.1:0"
  admin_listen: "localhost:0"
  shutdown_grace: %v
  close_spread: %v
  shutdown_close_code: %d
log:
  access: false
routes:
`, lcGrace, lcSpread, code)
	}
	routeA := func(cap string) string {
		return fmt.Sprintf("  - name: a\n    path: /a\n    upstreams: [%q]\n    max_message_bytes: %s\n", ua.url, cap)
	}
	routeB := fmt.Sprintf("  - name: b\n    path: /b\n    upstreams: [%q, %q]\n", ub1.url, ub2.url)
	routeC := "  - name: c\n    path: /c\n    upstreams: [builtin:echo]\n"
	writeFile(t, path, server(1001)+routeA("4KiB")+routeB)
	p := start(t, "-config", path)
	admin := "http://" + p.logged(t, "admin listening")
	hup := func(n int, msg string) map[string]any {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		return p.waitLog(t, msg, n)
	}
	onA := openN(t, p.addr, "/a", "a", 50)
	onB := openN(t, p.addr, "/b", "b", 50)
	all := append(append([]*lcClient(nil), onA...), onB...)
	big := strings.Repeat("x", 2048)
	for _, lc := range onA {
		if err := lc.echo(big); err != nil {
			t.Fatalf("under the 4KiB cap: %v", err)
		}
	}

	// 1. Add route c, lower a's cap to 1KiB, change a server setting.
	writeFile(t, path, server(1012)+routeA("1KiB")+routeB+routeC)
	hup(1, "config reloaded")
	w := p.waitLog(t, "reload: settings that need a restart changed; their old values stay in force", 1)
	if fmt.Sprint(w["keys"]) != "[server.shutdown_close_code]" || w["level"] != "warn" {
		t.Errorf("server change warning: %v", w)
	}
	echoAll(t, "after adding a route", all)
	newC, err := dialLC(p.addr, "/c", "c0")
	if err != nil {
		t.Fatalf("the new route: %v", err)
	}
	newC.c.Close()
	for _, lc := range onA[:5] {
		if err := lc.echo(big); err != nil {
			t.Errorf("an old session lost its 4KiB cap: %v", err)
		}
	}
	newA, err := dialLC(p.addr, "/a", "a-new")
	if err != nil {
		t.Fatal(err)
	}
	_ = newA.c.WriteMessage(websocket.TextMessage, []byte(big))
	if code, err := newA.closeCode(5 * time.Second); code != 1009 {
		t.Errorf("a new session sending 2KiB under the new 1KiB cap: close %d (%v), want 1009", code, err)
	}

	// 2. Drain upstream b1.
	var onB1, onB2 []*lcClient
	for _, lc := range onB {
		if ub1.has(lc.id) {
			onB1 = append(onB1, lc)
		} else {
			onB2 = append(onB2, lc)
		}
	}
	if len(onB1) == 0 || len(onB2) == 0 {
		t.Fatalf("route b's sessions: %d on b1, %d on b2; want both used", len(onB1), len(onB2))
	}
	resp, err := http.Post(admin+"/drain?upstream="+url.QueryEscape(ub1.url), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("draining %d sessions\n", len(onB1)); resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("POST /drain?upstream=b1: %d %q, want 200 %q", resp.StatusCode, body, want)
	}
	expectClosed(t, "drained upstream b1", onB1, 1012, lcSpread+3*time.Second)
	for _, c := range ub1.waitCodes(t, len(onB1), 3*time.Second) {
		if c != 1001 {
			t.Errorf("drained upstream b1 got close %d, want 1001", c)
		}
	}
	b1Conns := ub1.connCount()
	moreB := openN(t, p.addr, "/b", "b-new", 6)
	if got := ub1.connCount(); got != b1Conns {
		t.Errorf("%d new sessions went to the drained upstream b1", got-b1Conns)
	}
	onB2 = append(onB2, moreB...)
	echoAll(t, "after draining b1", append(append([]*lcClient(nil), onA...), onB2...))

	// 3. Remove route b.
	writeFile(t, path, server(1012)+routeA("1KiB")+routeC)
	hup(2, "config reloaded")
	expectClosed(t, "removed route b", onB2, 1012, lcSpread+3*time.Second)
	for _, c := range ub2.waitCodes(t, len(onB2), 3*time.Second) {
		if c != 1001 {
			t.Errorf("upstream b2 of the removed route got close %d, want 1001", c)
		}
	}
	echoAll(t, "route a after route b was removed", onA)
	for _, lc := range onA {
		if code, ok := ua.ended(lc.id); ok {
			t.Errorf("session %s of route a ended upstream (close %d)", lc.id, code)
		}
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if c, resp, err := d.Dial("ws://"+p.addr+"/b", nil); err == nil {
		c.Close()
		t.Errorf("the removed route still accepts sessions")
	} else if resp == nil || resp.StatusCode != 404 {
		t.Errorf("the removed route: %v, want 404", err)
	}

	// 4. A broken config.
	writeFile(t, path, server(1001)+routeA("1KiB")+"    colour: red\n"+routeC)
	rej := hup(1, "reload rejected: the config in force is unchanged")
	if e := fmt.Sprint(rej["errors"]); !strings.Contains(e, path+":") || !strings.Contains(e, "routes[0].colour") {
		t.Errorf("the rejection does not name the file, line and key: %v", rej)
	}
	echoAll(t, "after a broken config", onA)
	for _, route := range []string{"/a", "/c"} {
		lc, err := dialLC(p.addr, route, "after-broken")
		if err != nil {
			t.Errorf("after a broken config: %v", err)
			continue
		}
		lc.c.Close()
	}
	if n := len(p.logLines("config reloaded")); n != 2 {
		t.Errorf("%d reloads logged, want 2", n)
	}

	// SIGTERM: the shutdown_close_code in force is still the first one.
	t0 := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, "shutdown after the reloads", onA, 1001, lcGrace)
	if _, code := p.exitedAt(t, t0, lcGrace+2*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
}

package proxy

// Helpers of the relay's end-to-end tests (docs/relay.md, "Close
// translation"): raw peers that write every byte themselves, third-party
// peers (gorilla/websocket, coder/websocket), gateway configs with short
// timeouts, and the access log line of a session.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wsgate/handshake"
	"wsgate/internal/wstest"
)

// relayIO bounds every read and write of the relay tests.
const relayIO = 5 * time.Second

// relayYAML builds a one-route config toward upstream with short timeouts.
// kv overrides keys: "server.KEY" goes under server:, any other key under
// defaults:.
func relayYAML(upstream string, kv ...string) string {
	server := map[string]string{
		"shutdown_grace": "3s",
		"close_spread":   "0s",
	}
	defaults := map[string]string{
		"close_timeout":     "300ms",
		"write_timeout":     "2s",
		"idle_timeout":      "1m",
		"ping_interval":     "0s",
		"pong_timeout":      "1s",
		"max_frame_bytes":   "64KiB",
		"max_message_bytes": "256KiB",
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := strings.CutPrefix(kv[i], "server."); ok {
			server[k] = kv[i+1]
		} else {
			defaults[kv[i]] = kv[i+1]
		}
	}
	var b strings.Builder
	emit := func(name string, m map[string]string) {
		b.WriteString(name + ":\n")
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s: %s\n", k, m[k])
		}
	}
	emit("server", server)
	emit("defaults", defaults)
	fmt.Fprintf(&b, "routes:\n  - name: relay\n    path: /\n    upstreams: [%q]\n", upstream)
	return b.String()
}

// rawUpstream is an upstream that answers every opening handshake by hand
// and gives the connection, as a rawPeer, to handle (on its own goroutine).
// Close (at test cleanup) waits for every handler.
type rawUpstream struct {
	URL    string
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	handle func(p *wstest.Peer)
}

func newRawUpstream(t testing.TB, handle func(p *wstest.Peer)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{URL: "ws://" + ln.Addr().String(), ln: ln, handle: handle, conns: map[net.Conn]struct{}{}}
	u.wg.Add(1)
	go u.serve(t)
	t.Cleanup(u.close)
	return u
}

func (u *rawUpstream) serve(t testing.TB) {
	defer u.wg.Done()
	for {
		conn, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns[conn] = struct{}{}
		u.mu.Unlock()
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer func() {
				u.mu.Lock()
				delete(u.conns, conn)
				u.mu.Unlock()
				conn.Close()
			}()
			br := bufio.NewReader(conn)
			if answerUpgrade(conn, br) {
				u.handle(&wstest.Peer{T: t, Conn: conn, BR: br})
			}
		}()
	}
}

// answerUpgrade reads an opening handshake from conn (through br) and
// answers it with a 101 by hand, within relayIO. It reports whether the
// connection is now a WebSocket.
func answerUpgrade(conn net.Conn, br *bufio.Reader) bool {
	_ = conn.SetDeadline(time.Now().Add(relayIO))
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	hs, rej := handshake.Check(req)
	if rej != nil {
		return false
	}
	if _, err := conn.Write(handshake.AppendResponse101(nil, hs.Key, "", nil)); err != nil {
		return false
	}
	_ = conn.SetDeadline(time.Time{})
	return true
}

func (u *rawUpstream) close() {
	u.ln.Close()
	u.mu.Lock()
	for c := range u.conns {
		_ = c.SetDeadline(time.Now())
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// rawUpstreamChan is a rawUpstream whose connections are handed to the test
// through a channel; the handler returns when the test says so (or at
// cleanup).
func rawUpstreamChan(t testing.TB) (*rawUpstream, <-chan *wstest.Peer) {
	ch := make(chan *wstest.Peer, 16)
	done := make(chan struct{})
	u := newRawUpstream(t, func(p *wstest.Peer) {
		ch <- p
		<-done
	})
	t.Cleanup(func() { close(done) }) // runs before u.close (LIFO)
	return u, ch
}

func recvPeer(t testing.TB, ch <-chan *wstest.Peer) *wstest.Peer {
	t.Helper()
	select {
	case p := <-ch:
		p.T = t
		return p
	case <-time.After(relayIO):
		t.Fatal("no upstream connection")
		return nil
	}
}

// ---- third-party upstream ----

// closeRecord is a Close frame a third-party peer received.
type closeRecord struct {
	Code int
	Text string
	Err  error // the read error, when it was not a Close
}

// gorillaUpstream is an upstream served by gorilla/websocket: it echoes
// every message and records the Close it receives (or the error that ended
// it) on Closes. onConn, if set, runs right after the upgrade instead of the
// echo loop's first step (e.g. to send a Close first).
type gorillaUpstream struct {
	URL    string
	Closes chan closeRecord
	srv    *http.Server
	wg     sync.WaitGroup
}

func newGorillaUpstream(t testing.TB, onConn func(c *websocket.Conn)) *gorillaUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &gorillaUpstream{URL: "ws://" + ln.Addr().String(), Closes: make(chan closeRecord, 64)}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.wg.Add(1)
		defer u.wg.Done()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		// Reply to a Close with its code and "reply:"+reason, so a test can
		// tell the relayed reply from an echo made up by the gateway.
		c.SetCloseHandler(func(code int, text string) error {
			msg := websocket.FormatCloseMessage(code, "reply:"+text)
			if code == websocket.CloseNoStatusReceived {
				msg = []byte{}
			}
			_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(relayIO))
			return nil
		})
		if onConn != nil {
			onConn(c)
		}
		for {
			_ = c.SetReadDeadline(time.Now().Add(relayIO))
			op, p, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					u.Closes <- closeRecord{Code: ce.Code, Text: ce.Text}
				} else {
					u.Closes <- closeRecord{Err: err}
				}
				return
			}
			_ = c.SetWriteDeadline(time.Now().Add(relayIO))
			if err := c.WriteMessage(op, p); err != nil {
				u.Closes <- closeRecord{Err: err}
				return
			}
		}
	})}
	go func() { _ = u.srv.Serve(ln) }()
	t.Cleanup(func() {
		u.srv.Close()
		u.wg.Wait()
	})
	return u
}

// expectClose waits for the upstream's recorded Close.
func (u *gorillaUpstream) expectClose(t testing.TB, code int, text string) {
	t.Helper()
	select {
	case r := <-u.Closes:
		if r.Err != nil || r.Code != code || r.Text != text {
			t.Errorf("upstream received %+v, want Close(%d, %q)", r, code, text)
		}
	case <-time.After(relayIO):
		t.Errorf("upstream received no Close within %v", relayIO)
	}
}

// ---- the access log ----

// sessionLog waits for the n-th (1-based) access log line of gw and returns
// it decoded.
func sessionLog(t testing.TB, gw *testGateway, n int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(relayIO)
	for {
		lines := gw.Logs.Lines(`"event":"session"`)
		if len(lines) >= n {
			var m map[string]any
			if err := json.Unmarshal([]byte(lines[n-1]), &m); err != nil {
				t.Fatalf("access log %q: %v", lines[n-1], err)
			}
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access log line %d; logs:\n%s", n, gw.Logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectLog checks fields of the first access log line; values are compared
// as their string form.
func expectLog(t testing.TB, gw *testGateway, kv ...string) map[string]any {
	t.Helper()
	m := sessionLog(t, gw, 1)
	for i := 0; i+1 < len(kv); i += 2 {
		got := fmt.Sprint(m[kv[i]])
		if got != kv[i+1] {
			t.Errorf("access log %s = %q, want %q (line %v)", kv[i], got, kv[i+1], m)
		}
	}
	return m
}

// itoa is strconv.Itoa for close codes.
func itoa[T ~int | ~uint16](v T) string { return strconv.Itoa(int(v)) }

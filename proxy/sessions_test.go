package proxy

// End-to-end tests of the sessions API (README "Sessions API and events")
// with third-party peers: gorilla/websocket and coder/websocket clients, a
// gorilla upstream, raw frames where the wire itself is the question.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"

	"wsgate/frame"
	"wsgate/internal/relay"
	"wsgate/internal/wstest"
)

type listAnswer struct {
	Sessions []struct {
		ID, Route, Client, User, Upstream string
		Tags                              []string
		Pushed                            int64
		C2UMessages                       int64 `json:"c2u_messages"`
	}
	Truncated bool
}

func TestSessionsPushReachesThatClient(t *testing.T) {
	t.Parallel()
	up := newSessUpstream(t)
	gw := startAdminGateway(t, sessYAML(up.URL), false)
	a, resp := dialGorilla(t, gw, "a", "room:1,user:7")
	b, _ := dialGorilla(t, gw, "b", "")
	if v := resp.Header.Values("X-Wsgate-Tags"); len(v) > 0 {
		t.Errorf("the client's 101 carries X-Wsgate-Tags %q: it is for the gateway only", v)
	}
	idA, idB := gw.sessID(t, up, "a"), gw.sessID(t, up, "b")
	if _, ok := parseSessionID(idA); !ok || idA == idB {
		t.Fatalf("upstream saw session ids %q and %q: want two distinct base64url ids of 128 bits", idA, idB)
	}

	st, body := admin(t, gw, "GET", "/sessions/"+idA, "", "", nil)
	if st != 200 {
		t.Fatalf("GET /sessions/%s = %d %s", idA, st, body)
	}
	one := decode[struct {
		ID, Route, Client string
		Tags              []string
	}](t, body)
	if one.ID != idA || one.Route != "relay" || one.Client != "127.0.0.1" || strings.Join(one.Tags, "|") != "room:1|user:7" {
		t.Errorf("GET /sessions/{id} = %s", body)
	}

	// Text for text/* and application/json, binary otherwise.
	for _, c := range []struct {
		ct   string
		op   int
		body string
	}{
		{"text/plain; charset=utf-8", gorilla.TextMessage, "hello a"},
		{"application/json", gorilla.TextMessage, `{"n":1}`},
		{"application/octet-stream", gorilla.BinaryMessage, "\x00\x01\xff"},
		{"", gorilla.BinaryMessage, "no type"},
	} {
		if st := push(t, gw, idA, c.ct, []byte(c.body)); st != http.StatusAccepted {
			t.Fatalf("push %q = %d, want 202", c.ct, st)
		}
		_ = a.SetReadDeadline(time.Now().Add(relayIO))
		op, got, err := a.ReadMessage()
		if err != nil || op != c.op || string(got) != c.body {
			t.Errorf("push %q: client got op %d %q (%v), want op %d %q", c.ct, op, got, err, c.op, c.body)
		}
	}
	// b got none of it: its next message is its own echo.
	if err := b.WriteMessage(gorilla.TextMessage, []byte("echo b")); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(relayIO))
	if _, got, err := b.ReadMessage(); err != nil || string(got) != "echo b" {
		t.Errorf("b read %q (%v), want its echo only", got, err)
	}
	// The relay goes on as before on a.
	if err := a.WriteMessage(gorilla.TextMessage, []byte("echo a")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := a.ReadMessage(); err != nil || string(got) != "echo a" {
		t.Errorf("a read %q (%v), want its echo", got, err)
	}
	if st := push(t, gw, idA, "text/plain", []byte("\xff\xfe")); st != http.StatusBadRequest {
		t.Errorf("text push that is not UTF-8 = %d, want 400", st)
	}
	if st := push(t, gw, "AAAAAAAAAAAAAAAAAAAAAA", "text/plain", []byte("x")); st != http.StatusNotFound {
		t.Errorf("push to an unknown id = %d, want 404", st)
	}
	if st := push(t, gw, "nope", "text/plain", []byte("x")); st != http.StatusNotFound {
		t.Errorf("push to a malformed id = %d, want 404", st)
	}
	// Over the route's max_message_bytes (256KiB in sessYAML): 413.
	if st := push(t, gw, idA, "", make([]byte, 256<<10+1)); st != http.StatusRequestEntityTooLarge {
		t.Errorf("push over max_message_bytes = %d, want 413", st)
	}

	// Listing, with filters.
	st, body = admin(t, gw, "GET", "/sessions?tag=room:1", "", "", nil)
	l := decode[listAnswer](t, body)
	if st != 200 || len(l.Sessions) != 1 || l.Sessions[0].ID != idA || l.Sessions[0].Pushed != 4 || l.Truncated {
		t.Errorf("GET /sessions?tag=room:1 = %d %s", st, body)
	}
	_, body = admin(t, gw, "GET", "/sessions?route=relay&client=127.0.0.1&limit=1", "", "", nil)
	if l := decode[listAnswer](t, body); len(l.Sessions) != 1 || !l.Truncated {
		t.Errorf("limit=1 of 2 sessions = %s, want one and truncated", body)
	}
	_, body = admin(t, gw, "GET", "/sessions?route=other", "", "", nil)
	if l := decode[listAnswer](t, body); len(l.Sessions) != 0 || l.Truncated {
		t.Errorf("route=other = %s, want none", body)
	}
	if st, _ := admin(t, gw, "GET", "/sessions?limit=0", "", "", nil); st != 400 {
		t.Errorf("limit=0 = %d, want 400", st)
	}
	if v := counterValue(gw.sess.metrics.Pushed.WithLabelValues("relay")); v != 4 {
		t.Errorf("wsgate_pushed_messages_total{route=relay} = %v, want 4", v)
	}

	a.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(1000, ""), time.Now().Add(relayIO))
	line := waitAccessLine(t, gw, idA)
	if line["pushed"] != float64(4) {
		t.Errorf("access line pushed = %v, want 4 (%v)", line["pushed"], line)
	}
}

// waitAccessLine waits for the access line of session id.
func waitAccessLine(t testing.TB, gw *adminGateway, id string) map[string]any {
	t.Helper()
	var line map[string]any
	eventually(t, "the access line of "+id, func() bool {
		for _, l := range gw.Logs.Lines(`"event":"session"`) {
			if strings.Contains(l, `"session":"`+id+`"`) {
				line = decode[map[string]any](t, []byte(l))
				return true
			}
		}
		return false
	})
	return line
}

// TestSessionsPushBetweenFragments: a push while the upstream is half-way
// through a fragmented message reaches the client after its last fragment,
// as one unfragmented unmasked frame with RSV clear.
func TestSessionsPushBetweenFragments(t *testing.T) {
	t.Parallel()
	peers := make(chan *wstest.Peer, 1)
	release := make(chan struct{})
	up := newRawUpstream(t, func(p *wstest.Peer) {
		peers <- p
		<-release
		p.ReadClose()
	})
	gw := startAdminGateway(t, sessYAML(up.URL), false)
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, peers)
	defer close(release)
	u.Send(false, frame.OpText, []byte("part1-"))
	if f := c.Next(); f.Opcode != frame.OpText || f.Fin || string(f.Payload) != "part1-" {
		t.Fatalf("first fragment = %v", f)
	}
	id := onlySession(t, gw)
	for i := range 3 {
		if st := push(t, gw, id, "text/plain", []byte("push"+strconv.Itoa(i))); st != 202 {
			t.Fatalf("push = %d", st)
		}
	}
	// Let the gateway act on the pushes if it would (a wrong relay would
	// deliver them now, between the fragments).
	time.Sleep(100 * time.Millisecond)
	u.Send(false, frame.OpContinuation, []byte("part2-"))
	u.Send(true, frame.OpContinuation, []byte("part3"))
	want := []string{"cont part2- fin=false", "cont part3 fin=true", "text push0 fin=true", "text push1 fin=true", "text push2 fin=true"}
	for _, w := range want {
		f := c.Next()
		op := "text"
		if f.Opcode == frame.OpContinuation {
			op = "cont"
		}
		got := fmt.Sprintf("%s %s fin=%v", op, f.Payload, f.Fin)
		if got != w {
			t.Fatalf("client frame %q, want %q", got, w)
		}
		if f.Masked || f.Rsv != 0 {
			t.Errorf("frame %v: masked or RSV set toward the client", f)
		}
	}
	c.SendClose(1000, "")
}

// onlySession is the id of gw's one session.
func onlySession(t testing.TB, gw *adminGateway) string {
	t.Helper()
	var l listAnswer
	eventually(t, "one session listed", func() bool {
		_, body := admin(t, gw, "GET", "/sessions", "", "", nil)
		l = decode[listAnswer](t, body)
		return len(l.Sessions) == 1
	})
	return l.Sessions[0].ID
}

// TestSessionsPushOrder: 1,000 pushes to one session reach its client (a
// coder/websocket client) in order, while the client's own messages are
// echoed in between.
func TestSessionsPushOrder(t *testing.T) {
	t.Parallel()
	up := newSessUpstream(t)
	gw := startAdminGateway(t, sessYAML(up.URL), false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+gw.Addr+"/s?name=c", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	id := gw.sessID(t, up, "c")
	const n = 1000
	got := make(chan error, 1)
	go func() {
		next := 0
		for next < n {
			_, b, err := c.Read(ctx)
			if err != nil {
				got <- fmt.Errorf("after %d pushes: %v", next, err)
				return
			}
			if strings.HasPrefix(string(b), "echo") {
				continue
			}
			if string(b) != "m"+strconv.Itoa(next) {
				got <- fmt.Errorf("push %d arrived as %q", next, b)
				return
			}
			next++
		}
		got <- nil
	}()
	full := 0
	for i := 0; i < n; {
		switch st := push(t, gw, id, "text/plain", []byte("m"+strconv.Itoa(i))); st {
		case 202:
			i++
			if i%100 == 0 {
				if err := c.Write(ctx, websocket.MessageText, []byte("echo"+strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
		case 429: // the client reads more slowly than we push: try again
			full++
			time.Sleep(time.Millisecond)
		default:
			t.Fatalf("push %d = %d", i, st)
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pushes in order (%d answers 429 on the way)", n, full)
	c.Close(websocket.StatusNormalClosure, "")
}

// TestSessionsDelete: DELETE closes the client with the code and reason
// given and the upstream with 1001; codes an admin may not send are 400,
// unknown ids 404.
func TestSessionsDelete(t *testing.T) {
	t.Parallel()
	up := newSessUpstream(t)
	gw := startAdminGateway(t, sessYAML(up.URL), false)
	c, _ := dialGorilla(t, gw, "c", "")
	id := gw.sessID(t, up, "c")
	for _, code := range []string{"999", "1002", "1005", "1006", "1009", "1010", "1014", "1015", "2999", "5000", "x", "-1"} {
		if st, body := admin(t, gw, "DELETE", "/sessions/"+id+"?code="+code, "", "", nil); st != 400 {
			t.Errorf("DELETE code=%s = %d %s, want 400", code, st, body)
		}
	}
	if st, _ := admin(t, gw, "DELETE", "/sessions/"+id+"?code=4000&reason="+strings.Repeat("x", 124), "", "", nil); st != 400 {
		t.Errorf("DELETE with a 124-byte reason = %d, want 400", st)
	}
	if st, _ := admin(t, gw, "DELETE", "/sessions/AAAAAAAAAAAAAAAAAAAAAA?code=4000", "", "", nil); st != 404 {
		t.Errorf("DELETE unknown id = %d, want 404", st)
	}
	// Still open after all that.
	if err := c.WriteMessage(gorilla.TextMessage, []byte("still")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(relayIO))
	if _, b, err := c.ReadMessage(); err != nil || string(b) != "still" {
		t.Fatalf("echo after the refused DELETEs: %q %v", b, err)
	}
	// A message pushed just before the DELETE still arrives before the
	// Close.
	if st := push(t, gw, id, "text/plain", []byte("last words")); st != 202 {
		t.Fatalf("push = %d", st)
	}
	if st, body := admin(t, gw, "DELETE", "/sessions/"+id+"?code=4000&reason=kicked+by+admin", "", "", nil); st != 202 {
		t.Fatalf("DELETE = %d %s", st, body)
	}
	_, b, err := c.ReadMessage()
	if err != nil || string(b) != "last words" {
		t.Errorf("before the Close the client read %q %v, want the pushed message", b, err)
	}
	_, _, err = c.ReadMessage()
	if ce, ok := err.(*gorilla.CloseError); !ok || ce.Code != 4000 || ce.Text != "kicked by admin" {
		t.Errorf("client got %v, want Close(4000, \"kicked by admin\")", err)
	}
	if cr := up.closeOf(t, id); cr.Code != 1001 {
		t.Errorf("upstream got %+v, want Close 1001", cr)
	}
	line := waitAccessLine(t, gw, id)
	if line["client_close_code"] != "4000" || line["upstream_close_code"] != "1001" || line["reason"] != "admin" {
		t.Errorf("access line %v", line)
	}
	eventually(t, "the session gone from the registry", func() bool {
		st, _ := admin(t, gw, "GET", "/sessions/"+id, "", "", nil)
		return st == 404
	})
	if st := push(t, gw, id, "text/plain", []byte("x")); st != 404 {
		t.Errorf("push after the end = %d, want 404", st)
	}
}

// TestSessionsQueueFull: while the client does not read, pushes fill the
// socket buffers, then the session's queue: 429. Once the client reads,
// every accepted push arrives, and the session goes on.
func TestSessionsQueueFull(t *testing.T) {
	t.Parallel()
	up := newSessUpstream(t)
	gw := startAdminGateway(t, sessYAML(up.URL, "write_timeout", "30s"), false)
	c, _ := dialGorilla(t, gw, "c", "")
	id := gw.sessID(t, up, "c")
	msg := bytes.Repeat([]byte("x"), 64<<10)
	accepted := 0
	for {
		st := push(t, gw, id, "application/octet-stream", msg)
		if st == 429 {
			break
		}
		if st != 202 {
			t.Fatalf("push %d = %d", accepted, st)
		}
		accepted++
		if accepted > 2000 { // 128 MiB: no socket buffers are that large
			t.Fatal("no 429 after 2000 pushes of 64 KiB to a client that does not read")
		}
	}
	// The bound is the queue's: 1 MiB of 64 KiB messages is 16 waiting.
	if st, _ := admin(t, gw, "GET", "/sessions/"+id, "", "", nil); st != 200 {
		t.Fatalf("the session is gone after the 429: %d", st)
	}
	for i := range accepted {
		_ = c.SetReadDeadline(time.Now().Add(relayIO))
		op, b, err := c.ReadMessage()
		if err != nil || op != gorilla.BinaryMessage || len(b) != len(msg) {
			t.Fatalf("message %d of %d: op %d, %d bytes, %v", i, accepted, op, len(b), err)
		}
	}
	if err := c.WriteMessage(gorilla.TextMessage, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.ReadMessage(); err != nil || string(b) != "after" {
		t.Fatalf("echo after the queue drained: %q %v", b, err)
	}
	if st := push(t, gw, id, "text/plain", []byte("again")); st != 202 {
		t.Fatalf("push after the queue drained = %d", st)
	}
	if _, b, err := c.ReadMessage(); err != nil || string(b) != "again" {
		t.Fatalf("push after the queue drained: %q %v", b, err)
	}
	t.Logf("%d pushes of 64 KiB accepted before the 429", accepted)
}

// TestSessionsPushParked: a session whose legs are parked is woken to
// deliver a push, and parks again.
func TestSessionsPushParked(t *testing.T) {
	t.Parallel()
	if relay.NewPoller() == nil {
		t.Skip("no epoll: legs never park")
	}
	up := newSessUpstream(t)
	gw := startAdminGateway(t, sessYAML(up.URL), false)
	c, _ := dialGorilla(t, gw, "c", "")
	id := gw.sessID(t, up, "c")
	parked := func() int {
		for _, s := range gw.reg.list() {
			return s.ParkedLegs()
		}
		return -1
	}
	deadline := 5 * relay.ParkAfter
	waitParked := func() {
		t.Helper()
		end := time.Now().Add(deadline)
		for parked() != 2 {
			if time.Now().After(end) {
				t.Fatalf("legs parked: %d, want 2", parked())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitParked()
	if st := push(t, gw, id, "text/plain", []byte("wake up")); st != 202 {
		t.Fatalf("push = %d", st)
	}
	_ = c.SetReadDeadline(time.Now().Add(relayIO))
	if _, b, err := c.ReadMessage(); err != nil || string(b) != "wake up" {
		t.Fatalf("push to a parked session: %q %v", b, err)
	}
	waitParked()
}

// TestSessionsBroadcastTag: 1,000 sessions, every other one tagged by the
// upstream; a broadcast to the tag reaches exactly the tagged ones (and
// says how many), while an echo workload on other sessions keeps flowing.
func TestSessionsBroadcastTag(t *testing.T) {
	t.Parallel()
	up := newSessUpstream(t)
	gw := startAdminGateway(t, sessYAML(up.URL), false)
	const n = 1000
	conns := make([]*gorilla.Conn, n)
	for i := range conns {
		tags := "all"
		if i%2 == 0 {
			tags = "all,room:even"
		}
		conns[i], _ = dialGorilla(t, gw, "s"+strconv.Itoa(i), tags)
	}
	// The echo workload: other sessions, untagged, round trips until told
	// to stop.
	stop := make(chan struct{})
	echoes := make(chan error, 4)
	for w := range 4 {
		c, _ := dialGorilla(t, gw, "echo"+strconv.Itoa(w), "")
		go func() {
			k := 0
			for {
				select {
				case <-stop:
					echoes <- nil
					return
				default:
				}
				msg := []byte("echo " + strconv.Itoa(k))
				_ = c.SetWriteDeadline(time.Now().Add(relayIO))
				_ = c.SetReadDeadline(time.Now().Add(relayIO))
				if err := c.WriteMessage(gorilla.TextMessage, msg); err != nil {
					echoes <- err
					return
				}
				if _, b, err := c.ReadMessage(); err != nil || !bytes.Equal(b, msg) {
					echoes <- fmt.Errorf("echo %d: %q %v", k, b, err)
					return
				}
				k++
			}
		}()
	}
	eventually(t, "every session registered", func() bool { return gw.Sessions() == n+4 })

	st, body := admin(t, gw, "POST", "/broadcast?tag=room:even", "text/plain", "", []byte("to the evens"))
	if st != 200 {
		t.Fatalf("broadcast = %d %s", st, body)
	}
	if got := decode[map[string]int](t, body)["sessions"]; got != n/2 {
		t.Errorf("broadcast reached %d sessions, want %d", got, n/2)
	}
	close(stop)
	for range 4 {
		if err := <-echoes; err != nil {
			t.Errorf("echo workload: %v", err)
		}
	}
	// Every session sends a marker, echoed after anything pushed before:
	// the evens read the broadcast first, the odds only their marker.
	for i, c := range conns {
		if err := c.WriteMessage(gorilla.TextMessage, []byte("marker")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(relayIO))
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		want := "marker"
		if i%2 == 0 {
			want = "to the evens"
		}
		if string(b) != want {
			t.Fatalf("session %d read %q, want %q", i, b, want)
		}
		if i%2 == 0 {
			if _, b, err := c.ReadMessage(); err != nil || string(b) != "marker" {
				t.Fatalf("session %d: %q %v after the broadcast, want its marker", i, b, err)
			}
		}
	}
	// Listing by tag uses the same index.
	_, body = admin(t, gw, "GET", "/sessions?tag=room:even&limit=100000", "", "", nil)
	if l := decode[listAnswer](t, body); len(l.Sessions) != n/2 || l.Truncated {
		t.Errorf("GET /sessions?tag=room:even: %d sessions, want %d", len(l.Sessions), n/2)
	}
	// By route: every session; no filter at all is refused.
	st, body = admin(t, gw, "POST", "/broadcast?route=relay", "application/octet-stream", "", []byte{1, 2, 3})
	if got := decode[map[string]int](t, body)["sessions"]; st != 200 || got != n+4 {
		t.Errorf("broadcast by route = %d %s, want %d sessions", st, body, n+4)
	}
	if st, _ := admin(t, gw, "POST", "/broadcast", "text/plain", "", []byte("x")); st != 400 {
		t.Errorf("broadcast without a filter = %d, want 400", st)
	}
	if st, body := admin(t, gw, "POST", "/broadcast?tag=nobody", "text/plain", "", []byte("x")); st != 200 || decode[map[string]int](t, body)["sessions"] != 0 {
		t.Errorf("broadcast to an unknown tag = %d %s, want 200 and 0 sessions", st, body)
	}
}

// TestSessionsAdminToken: with server.admin_token_file, every admin
// endpoint but /healthz and /readyz answers 401 without the token or with
// a wrong one, and as usual with it.
func TestSessionsAdminToken(t *testing.T) {
	t.Parallel()
	up := newSessUpstream(t)
	tokFile := t.TempDir() + "/token"
	const tok = "s3cret-admin-token-0123456789abcdef"
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startAdminGateway(t, sessYAML(up.URL, "server.admin_token_file", tokFile), false)
	_, _ = dialGorilla(t, gw, "a", "t")
	_, _ = dialGorilla(t, gw, "b", "")
	idA, idB := gw.sessID(t, up, "a"), gw.sessID(t, up, "b")
	type req struct {
		method, path string
		want         int
	}
	reqs := []req{
		{"GET", "/sessions", 200},
		{"GET", "/sessions/" + idA, 200},
		{"POST", "/sessions/" + idA + "/messages", 202},
		{"POST", "/broadcast?tag=t", 200},
		{"DELETE", "/sessions/" + idB + "?code=4001", 202},
		{"GET", "/metrics", 200},
		{"GET", "/debug/pprof/", 200},
		{"POST", "/drain?route=nope", 404},
	}
	for _, r := range reqs {
		for _, bad := range []string{"", "wrong", tok + "x", strings.ToUpper(tok)} {
			st, _ := admin(t, gw, r.method, r.path, "text/plain", bad, []byte("m"))
			if st != 401 {
				t.Errorf("%s %s with token %q = %d, want 401", r.method, r.path, bad, st)
			}
		}
		// "Bearer" in another case is still the scheme (RFC 7235 §2.1).
		hreq, _ := http.NewRequest(r.method, "http://"+gw.AdminAddr+r.path, strings.NewReader("m"))
		hreq.Header.Set("Authorization", "Basic "+tok)
		if resp, err := adminClient.Do(hreq); err != nil || resp.StatusCode != 401 {
			t.Errorf("%s %s with Basic = %v %v, want 401", r.method, r.path, resp.StatusCode, err)
		} else {
			resp.Body.Close()
		}
	}
	for _, r := range reqs {
		if st, body := admin(t, gw, r.method, r.path, "text/plain", tok, []byte("m")); st != r.want {
			t.Errorf("%s %s with the token = %d %s, want %d", r.method, r.path, st, body, r.want)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if st, _ := admin(t, gw, "GET", p, "", "", nil); st != 200 {
			t.Errorf("%s without a token = %d, want 200", p, st)
		}
	}
}

// TestSessionsIDHeader: the id goes upstream in server.session_id_header,
// in place of any copy the client sent; "" sends none.
func TestSessionsIDHeader(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, yamlValue, header string }{
		{"default", "", "X-Wsgate-Session"},
		{"renamed", "X-Session-Id", "X-Session-Id"},
		{"off", `""`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			seen := make(chan http.Header, 1)
			up := newUpstream(t, "hdr", func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
				seen <- req.Header.Clone()
				accept101(nil)(u, req, conn, br)
			})
			kv := []string{}
			if c.yamlValue != "" {
				kv = append(kv, "server.session_id_header", c.yamlValue)
			}
			gw := startAdminGateway(t, sessYAML(up.URL, kv...), false)
			forged := "AAAAAAAAAAAAAAAAAAAAAA"
			d := gorilla.Dialer{HandshakeTimeout: relayIO}
			h := http.Header{"X-Wsgate-Session": {forged}}
			if c.header != "" {
				h.Set(c.header, forged)
			}
			conn, _, err := d.Dial("ws://"+gw.Addr+"/", h)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			got := <-seen
			if c.header == "" {
				if v := got.Get("X-Wsgate-Session"); v != forged {
					t.Errorf("with the header off, X-Wsgate-Session upstream = %q, want the client's %q passed as any header", v, forged)
				}
				return
			}
			id := onlySession(t, gw)
			if v := got.Values(c.header); len(v) != 1 || v[0] != id {
				t.Errorf("%s upstream = %q, want only the gateway's %q", c.header, v, id)
			}
		})
	}
}

// TestSessionsPushInUpstreamHandshake: an upstream may push to a session as
// soon as it has the session's id, in its own handshake, before the client
// has its 101. The sessions API waits for that session instead of
// answering 404; the client gets the message first, then the relay goes on.
func TestSessionsPushInUpstreamHandshake(t *testing.T) {
	t.Parallel()
	var gwp atomic.Pointer[adminGateway]
	type pushResult struct {
		status int
		err    error
	}
	results := make(chan pushResult, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upg := gorilla.Upgrader{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Wsgate-Session")
		sent := make(chan struct{})
		go func() {
			// The push is on the wire before the upstream answers.
			trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(sent) }}
			ctx := httptrace.WithClientTrace(context.Background(), trace)
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+gwp.Load().AdminAddr+"/sessions/"+id+"/messages",
				strings.NewReader("early"))
			req.Header.Set("Content-Type", "text/plain")
			resp, err := adminClient.Do(req)
			if err != nil {
				results <- pushResult{err: err}
				return
			}
			resp.Body.Close()
			results <- pushResult{status: resp.StatusCode}
		}()
		select {
		case <-sent:
		case <-time.After(relayIO):
		}
		c, err := upg.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			op, b, err := c.ReadMessage()
			if err != nil || c.WriteMessage(op, b) != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	gw := startAdminGateway(t, sessYAML("ws://"+ln.Addr().String()), false)
	gwp.Store(gw)
	c, _ := dialGorilla(t, gw, "early", "")
	var res pushResult
	select {
	case res = <-results:
	case <-time.After(2 * relayIO):
		t.Fatal("the push made in the upstream's handshake never got an answer")
	}
	if res.err != nil || res.status != http.StatusAccepted {
		t.Fatalf("push made in the upstream's handshake = %d (%v), want 202", res.status, res.err)
	}
	_ = c.SetReadDeadline(time.Now().Add(relayIO))
	if _, got, err := c.ReadMessage(); err != nil || string(got) != "early" {
		t.Fatalf("client's first message = %q (%v), want the push %q", got, err, "early")
	}
	if err := c.WriteMessage(gorilla.TextMessage, []byte("then echo")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(); err != nil || string(got) != "then echo" {
		t.Errorf("client read %q (%v), want its echo", got, err)
	}
}

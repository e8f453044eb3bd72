package proxy

// End-to-end tests of the session events (README "Sessions API and
// events"): a real HTTP receiver gets connect and disconnect for each
// session; one that is down for a while loses nothing within the retry
// budget; one that never comes back costs bounded memory, and the drops
// are counted.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"wsgate/internal/auth/authtest"
	"wsgate/internal/events"
)

func eventsYAML(upstream, url string, kv ...string) string {
	return sessYAML(upstream, append([]string{"events", fmt.Sprintf("{url: %q, on: [connect, disconnect], timeout: 2s}", url)}, kv...)...)
}

// openClose opens n sessions through gw (named prefix+i), then closes
// session i with Close(4000+i).
func openClose(t *testing.T, gw *adminGateway, prefix string, n int) {
	t.Helper()
	conns := make([]*gorilla.Conn, n)
	for i := range conns {
		conns[i], _ = dialGorilla(t, gw, prefix+strconv.Itoa(i), "grp:"+prefix)
	}
	for i, c := range conns {
		_ = c.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(4000+i, "bye"), time.Now().Add(relayIO))
		_ = c.SetReadDeadline(time.Now().Add(relayIO))
		if _, _, err := c.ReadMessage(); err == nil {
			t.Fatalf("session %d: a message after the Close", i)
		}
	}
}

// checkEvents checks that got holds exactly a connect and then a
// disconnect for each of the n sessions the upstream saw (by id), with the
// close codes openClose used.
func checkEvents(t *testing.T, got []map[string]any, up *sessUpstream, prefix string, n int) {
	t.Helper()
	type seen struct{ connect, disconnect map[string]any }
	byID := map[string]*seen{}
	for _, e := range got {
		id, _ := e["session"].(string)
		s := byID[id]
		if s == nil {
			s = &seen{}
			byID[id] = s
		}
		switch e["event"] {
		case "connect":
			if s.connect != nil || s.disconnect != nil {
				t.Errorf("session %s: connect again or after its disconnect", id)
			}
			s.connect = e
		case "disconnect":
			if s.connect == nil {
				t.Errorf("session %s: disconnect before its connect", id)
			}
			s.disconnect = e
		default:
			t.Errorf("unknown event %v", e)
		}
	}
	if len(byID) != n {
		t.Errorf("events for %d sessions, want %d", len(byID), n)
	}
	for i := range n {
		id := up.id(t, prefix+strconv.Itoa(i))
		s := byID[id]
		if s == nil || s.connect == nil || s.disconnect == nil {
			t.Errorf("session %d (%s): events %+v", i, id, s)
			continue
		}
		for _, e := range []map[string]any{s.connect, s.disconnect} {
			if e["route"] != "relay" || e["client"] != "127.0.0.1" || e["user"] != "" ||
				fmt.Sprint(e["tags"]) != "[grp:"+prefix+"]" {
				t.Errorf("session %d: event %v", i, e)
			}
			if ts, _ := e["time"].(string); ts == "" {
				t.Errorf("session %d: event without a time: %v", i, e)
			} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
				t.Errorf("session %d: time %q: %v", i, ts, err)
			}
		}
		d := s.disconnect
		code := strconv.Itoa(4000 + i)
		if d["upstream_close_code"] != code || d["client_close_code"] != code || d["reason"] != "normal" ||
			d["closed_by"] != "client" || d["upstream_close_reason"] != "bye" {
			t.Errorf("session %d: disconnect %v, want close codes %s", i, d, code)
		}
		if _, ok := d["c2u_messages"]; !ok {
			t.Errorf("session %d: disconnect without the access line's counts: %v", i, d)
		}
	}
}

func TestSessionsEvents(t *testing.T) {
	t.Parallel()
	up := newSessUpstream(t)
	rcv := newEventReceiver(t, "")
	gw := startAdminGateway(t, eventsYAML(up.URL, rcv.URL), false)
	const n = 100
	openClose(t, gw, "e", n)
	eventually(t, "200 events", func() bool { return len(rcv.events()) >= 2*n })
	checkEvents(t, rcv.events(), up, "e", n)
	if len(rcv.bad) > 0 {
		t.Errorf("malformed event requests: %q", rcv.bad)
	}
	// Counted once the receiver's answer is in, a moment after it
	// recorded the event.
	for _, ev := range []string{"connect", "disconnect"} {
		eventually(t, "wsgate_events_total{event="+ev+",result=ok} at 100", func() bool {
			return counterValue(gw.sess.metrics.Events.WithLabelValues("relay", ev, "ok")) == n
		})
	}
}

// TestSessionsEventsReceiverDown: the receiver is down (it drops every
// connection without an answer) for 3 s while sessions come and go; with
// the default back-off (retries after 1 s, 2 s and 4 s) every event still
// arrives.
func TestSessionsEventsReceiverDown(t *testing.T) {
	t.Parallel()
	up := newSessUpstream(t)
	rcv := newEventReceiver(t, "")
	rcv.down.Store(true)
	gw := startAdminGateway(t, eventsYAML(up.URL, rcv.URL), false)
	const n = 20
	down := time.Now()
	openClose(t, gw, "d", n)
	eventually(t, "every event taken", func() bool { return gw.sess.ev.Load() != nil && gw.sess.ev.Load().Pending() == 2*n })
	time.Sleep(3*time.Second - time.Since(down))
	rcv.down.Store(false)
	end := time.Now().Add(15 * time.Second)
	for len(rcv.events()) < 2*n && time.Now().Before(end) {
		time.Sleep(20 * time.Millisecond)
	}
	checkEvents(t, rcv.events(), up, "d", n)
	for _, res := range []string{"failed", "dropped"} {
		for _, ev := range []string{"connect", "disconnect"} {
			if v := counterValue(gw.sess.metrics.Events.WithLabelValues("relay", ev, res)); v != 0 {
				t.Errorf("wsgate_events_total{event=%s,result=%s} = %v, want 0", ev, res, v)
			}
		}
	}
}

// TestSessionsEventsReceiverGone: a receiver that never answers. The
// pending events never pass the bound; what is over it is dropped, what
// runs out of retries failed, and both are counted.
func TestSessionsEventsReceiverGone(t *testing.T) {
	t.Parallel()
	up := newSessUpstream(t)
	rcv := newEventReceiver(t, "")
	rcv.down.Store(true)
	const bound = 16
	gw := startSessGateway(t, eventsYAML(up.URL, rcv.URL), func(g *Gateway) {
		g.sess.evMax = bound
		g.sess.evBackoff = 200 * time.Millisecond // each event pending >= 1.4 s: the 100 pass the bound
	})
	const n = 50
	over := make(chan int, 1)
	stop := make(chan struct{})
	go func() {
		most := 0
		for {
			select {
			case <-stop:
				over <- most
				return
			case <-time.After(time.Millisecond):
			}
			if ev := gw.sess.ev.Load(); ev != nil {
				most = max(most, ev.Pending())
			}
		}
	}()
	openClose(t, gw, "g", n)
	count := func(res string) float64 {
		return counterValue(gw.sess.metrics.Events.WithLabelValues("relay", "connect", res)) +
			counterValue(gw.sess.metrics.Events.WithLabelValues("relay", "disconnect", res))
	}
	eventually(t, "every event failed or dropped", func() bool { return count("failed")+count("dropped") == 2*n })
	close(stop)
	if most := <-over; most > bound {
		t.Errorf("%d events pending at once, over the bound %d", most, bound)
	}
	if count("dropped") == 0 || count("failed") == 0 || count("ok") != 0 {
		t.Errorf("results: ok %v, failed %v, dropped %v: want failures and drops", count("ok"), count("failed"), count("dropped"))
	}
	if p := gw.sess.ev.Load().Pending(); p != 0 {
		t.Errorf("%d events still pending", p)
	}
	_ = events.Retries
}

// TestSessionsUser: with authentication on the route, the sessions API
// lists, filters and reports each session's user, and events carry it.
func TestSessionsUser(t *testing.T) {
	t.Parallel()
	up := newSessUpstream(t)
	rcv := newEventReceiver(t, "")
	secret := []byte(strings.Repeat("k", 32))
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := eventsYAML(up.URL, rcv.URL) +
		"    auth: {jwt: {secret_file: " + secretFile + ", algorithms: [HS256], issuer: " + testIss + ", audience: [" + testAud + "]}}\n"
	gw := startAdminGateway(t, yaml, false)
	dial := func(name, user string) *gorilla.Conn {
		tok := authtest.SignHMAC(t, secret, "", claims(user, time.Hour))
		d := gorilla.Dialer{HandshakeTimeout: relayIO}
		c, _, err := d.Dial("ws://"+gw.Addr+"/s?name="+name, http.Header{"Authorization": {"Bearer " + tok}})
		if err != nil {
			t.Fatalf("dial as %s: %v", user, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	alice := dial("a", "alice")
	_ = dial("b", "bob")
	idA := gw.sessID(t, up, "a")
	// The upstream sees the id before the client has its 101; the session
	// is listed from then on (registered right after the 101).
	var body []byte
	eventually(t, "both sessions listed", func() bool {
		_, all := admin(t, gw, "GET", "/sessions", "", "", nil)
		return len(decode[listAnswer](t, all).Sessions) == 2
	})
	_, body = admin(t, gw, "GET", "/sessions?user=alice", "", "", nil)
	l := decode[listAnswer](t, body)
	if len(l.Sessions) != 1 || l.Sessions[0].ID != idA || l.Sessions[0].User != "alice" {
		t.Errorf("GET /sessions?user=alice = %s", body)
	}
	if st := push(t, gw, idA, "text/plain", []byte("for alice")); st != 202 {
		t.Fatalf("push = %d", st)
	}
	_ = alice.SetReadDeadline(time.Now().Add(relayIO))
	if _, b, err := alice.ReadMessage(); err != nil || string(b) != "for alice" {
		t.Fatalf("alice read %q %v", b, err)
	}
	_ = alice.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(1000, ""), time.Now().Add(relayIO))
	eventually(t, "alice's disconnect", func() bool {
		for _, e := range rcv.events() {
			if e["event"] == "disconnect" && e["session"] == idA {
				return true
			}
		}
		return false
	})
	for _, e := range rcv.events() {
		if e["session"] == idA && e["user"] != "alice" {
			t.Errorf("event %v: want user alice", e)
		}
	}
}

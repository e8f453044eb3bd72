package proxy

// The sessions API across three gateways on one real redis-server
// (sessions_cluster.go).

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wsgate/internal/testutil/redistest"
)

// TestClusterSessionsAPI: a session lives on instance B; a push sent to
// A's admin API reaches its client, GET through C finds it, the listing
// with scope=cluster on A shows every instance's sessions, a broadcast
// through A reaches the tagged sessions on all three, an unknown id is 404
// everywhere, and DELETE through C closes it (code and reason to the
// client, 1001 upstream).
func TestClusterSessionsAPI(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up := newSessUpstream(t)
	var gws []*adminGateway
	for i := range 3 {
		yaml := sessYAML(up.URL) + fmt.Sprintf("cluster:\n  redis: %q\n  node: gw%d\n", srv.URL(), i+1)
		gws = append(gws, startAdminGateway(t, yaml, false))
	}
	a, b, c := gws[0], gws[1], gws[2]
	clients := map[string]*websocket.Conn{}
	for i, gw := range gws {
		for _, n := range []string{"x", "y"} {
			name := fmt.Sprintf("%s%d", n, i+1)
			cl, _ := dialGorilla(t, gw, name, "room:"+n)
			clients[name] = cl
		}
	}
	onB := up.id(t, "x2")
	read := func(name string) string {
		t.Helper()
		cl := clients[name]
		_ = cl.SetReadDeadline(time.Now().Add(relayIO))
		_, m, err := cl.ReadMessage()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return string(m)
	}

	// The directory is written in batches: poll until A finds B's session.
	eventually(t, "A to reach the session on B", func() bool {
		return push(t, a, onB, "text/plain", []byte("via A")) == 202
	})
	if m := read("x2"); m != "via A" {
		t.Fatalf("x2 got %q", m)
	}
	st, body := admin(t, c, "GET", "/sessions/"+onB, "", "", nil)
	if st != 200 || !strings.Contains(string(body), onB) || !strings.Contains(string(body), `"route":"relay"`) {
		t.Errorf("GET through C: %d %s", st, body)
	}

	// The listing of the whole cluster.
	var all struct {
		Sessions []struct {
			ID       string
			Instance string
		}
		Instances int
		Partial   bool
	}
	eventually(t, "the cluster's six sessions listed on A", func() bool {
		_, body := admin(t, a, "GET", "/sessions?scope=cluster", "", "", nil)
		all = decode[struct {
			Sessions []struct {
				ID       string
				Instance string
			}
			Instances int
			Partial   bool
		}](t, body)
		return len(all.Sessions) == 6
	})
	if all.Instances != 3 || all.Partial {
		t.Errorf("listing: %d instances, partial %v", all.Instances, all.Partial)
	}
	instances := map[string]bool{}
	for _, s := range all.Sessions {
		instances[s.Instance] = true
	}
	if len(instances) != 3 {
		t.Errorf("sessions from %d instances, want 3: %+v", len(instances), all.Sessions)
	}
	_, local := admin(t, a, "GET", "/sessions", "", "", nil)
	if n := len(decode[listAnswer](t, local).Sessions); n != 2 {
		t.Errorf("A's own listing has %d sessions, want its 2", n)
	}

	// A broadcast through A to one tag reaches the tagged session on every
	// instance, and only those.
	st, body = admin(t, a, "POST", "/broadcast?tag=room:y", "text/plain", "", []byte("to room y"))
	var bc struct {
		Sessions, Instances int
		Partial             bool
	}
	bc = decode[struct {
		Sessions, Instances int
		Partial             bool
	}](t, body)
	if st != 200 || bc.Sessions != 3 || bc.Instances != 3 || bc.Partial {
		t.Fatalf("broadcast: %d %s", st, body)
	}
	for i := range 3 {
		if m := read(fmt.Sprintf("y%d", i+1)); m != "to room y" {
			t.Errorf("y%d got %q", i+1, m)
		}
	}
	// (The x sessions got nothing: the next message each reads is the
	// one sent below, or the close.)

	// Unknown ids: 404 on every instance.
	for _, gw := range gws {
		if st, _ := admin(t, gw, "GET", "/sessions/AAAAAAAAAAAAAAAAAAAAAA", "", "", nil); st != 404 {
			t.Errorf("unknown id: %d", st)
		}
	}

	// DELETE through C closes the session on B.
	if st, body := admin(t, c, "DELETE", "/sessions/"+onB+"?code=4001&reason=bye", "", "", nil); st != 202 {
		t.Fatalf("DELETE through C: %d %s", st, body)
	}
	cl := clients["x2"]
	_ = cl.SetReadDeadline(time.Now().Add(relayIO))
	_, _, err := cl.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "bye" {
		t.Errorf("x2 read %v, want close 4001 bye", err)
	}
	if rec := up.closeOf(t, onB); rec.Code != 1001 {
		t.Errorf("the upstream got close %d, want 1001", rec.Code)
	}
	_ = b
}

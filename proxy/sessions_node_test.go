package proxy

// The sessions API with a non-Go client: Node's ws package (test/node).

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestSessionsNode(t *testing.T) {
	t.Parallel()
	node, dir := nodeDir(t, "ws")
	up := newSessUpstream(t)
	gw := startAdminGateway(t, sessYAML(up.URL), false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := &syncBuffer{}
	cmd := exec.CommandContext(ctx, node, "sessions.mjs", "ws://"+gw.Addr+"/s?name=node")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	id := gw.sessID(t, up, "node")
	eventually(t, "node's open", func() bool { return strings.Contains(out.String(), "open") })
	if st := push(t, gw, id, "application/json", []byte(`{"note":"hi node"}`)); st != 202 {
		t.Fatalf("push = %d", st)
	}
	if st := push(t, gw, id, "application/octet-stream", []byte{0xde, 0xad, 0xbe, 0xef}); st != 202 {
		t.Fatalf("push = %d", st)
	}
	if st, _ := admin(t, gw, "DELETE", "/sessions/"+id+"?code=4001&reason=bye+node", "", "", nil); st != 202 {
		t.Fatalf("DELETE = %d", st)
	}
	err := cmd.Wait()
	t.Logf("node sessions.mjs:\n%s", out.String())
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	want := "open\ntext {\"note\":\"hi node\"}\nbinary deadbeef\nclose 4001 bye node\n"
	if out.String() != want {
		t.Errorf("node printed %q, want %q", out.String(), want)
	}
	if cr := up.closeOf(t, id); cr.Code != 1001 {
		t.Errorf("upstream got %+v, want Close 1001", cr)
	}
}

package proxy

// Socket.IO through the gateway (test/node/socketio.mjs): two Node
// processes run the socket.io server behind one route; socket.io-client
// with its default transports (long-polling first, then the WebSocket
// upgrade) must keep its session. With balance: cookie it does; with
// round_robin it cannot, as the frameworks document: that proves the sticky
// cookie is what makes it work.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// startSocketIOServer runs `node socketio.mjs server PORT NAME` until the
// test ends and returns its URL once it listens.
func startSocketIOServer(t *testing.T, node, dir, name string) string {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(node, "socketio.mjs", "server", fmt.Sprint(port), name)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "listening") {
			t.Fatalf("socket.io server %s: %q", name, line)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("socket.io server %s did not start", name)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

func TestSocketIOSticky(t *testing.T) {
	t.Parallel()
	node, dir := nodeDir(t, "socket.io", "socket.io-client")
	a := startSocketIOServer(t, node, dir, "A")
	b := startSocketIOServer(t, node, dir, "B")
	run := func(balance string) (string, error) {
		gw := startGateway(t, e2eHead+fmt.Sprintf(`routes:
  - name: app
    path: /
    upstreams: [%s, %s]
    http: proxy
    balance: %s
`, a, b, balance))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, "socketio.mjs", "client", "http://"+gw.Addr, "100")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		t.Logf("balance: %s: node socketio.mjs client:\n%s", balance, out)
		return string(out), err
	}

	out, err := run("cookie")
	if err != nil {
		t.Fatalf("balance: cookie: the Socket.IO client failed: %v", err)
	}
	if !strings.Contains(out, "acks 100 from") || !strings.Contains(out, "over websocket") {
		t.Errorf("balance: cookie: want 100 acknowledgements over websocket from one server")
	}

	// Without stickiness the polling requests of one session alternate
	// between the two servers, and the second one does not know the
	// session: the client cannot keep it.
	out, err = run("round_robin")
	if err == nil {
		t.Fatalf("balance: round_robin: the Socket.IO client kept its session across two servers; the test cannot show that stickiness matters")
	}
	if !strings.Contains(out, "FAIL") {
		t.Errorf("balance: round_robin: the client failed without saying why: %v", err)
	}
}

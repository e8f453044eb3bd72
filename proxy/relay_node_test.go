package proxy

// Interop with a non-Go client: Node's ws package (test/node) through the
// gateway to a gorilla/websocket upstream that echoes.

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestNodeInterop(t *testing.T) {
	t.Parallel()
	node, dir := nodeDir(t, "ws")

	up := newGorillaUpstream(t, nil)
	gw := startGateway(t, relayYAML(up.URL, "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "interop.mjs", gw.URL+"/node")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("node interop.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	// The upstream's reply to the Close is relayed to the client.
	if !strings.Contains(string(out), "close 4000 reply:done") {
		t.Errorf("node did not get the upstream's close reply 4000 \"reply:done\"")
	}
	up.expectClose(t, 4000, "done")
	// Fragmentation reached the gateway as sent: 1 + 1 + 3 data frames,
	// a ping and the Close; 3 messages.
	expectLog(t, gw, "reason", "normal", "closed_by", "client",
		"client_close_code", "4000", "client_close_reason", "reply:done",
		"upstream_close_code", "4000", "upstream_close_reason", "done",
		"c2u_frames", "7", "c2u_messages", "3")
}

package proxy

// Compression with Node's ws (perMessageDeflate) through the gateway
// (test/node/deflate.mjs), checked on the wire at both ends.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coder "github.com/coder/websocket"
)

func TestDeflateNode(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("..", "test", "node")
	missing := func(what string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (CI installs it: cd test/node && npm ci)", what)
		}
		t.Skipf("%s is missing: install node and run `cd test/node && npm ci`", what)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws", "package.json")); err != nil {
		missing("test/node/node_modules/ws")
	}
	for _, takeover := range []bool{false, true} {
		name := "no_context_takeover"
		if takeover {
			name = "context_takeover"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// gorilla compresses without context takeover only; coder
			// keeps its window when the route allows it.
			upURL, upTap := newDeflateGorillaUpstream(t)
			want := "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
			kv := []string{"max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"}
			arg := ""
			if takeover {
				upURL, upTap = newDeflateCoderUpstream(t, coder.CompressionContextTakeover)
				want = "permessage-deflate"
				kv = append(kv, "permessage_deflate", "{context_takeover: true}")
				arg = "takeover"
			}
			gw := startGateway(t, relayYAML(upURL, kv...))
			addr, clTap := tapProxy(t, gw.Addr)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "deflate.mjs", "ws://"+addr+"/node", arg)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			t.Logf("node deflate.mjs:\n%s", out)
			if err != nil {
				t.Fatalf("node: %v", err)
			}
			if !strings.Contains(string(out), "PASS") {
				t.Fatal("node did not pass")
			}
			expectLog(t, gw, "reason", "normal", "closed_by", "client", "compression", want,
				"client_close_code", "1000", "upstream_close_code", "1000")
			// 20 JSON texts, a binary, a large text, a fragmented text.
			const messages = 23
			c, inflated := inflatedSeries(t, gw, "relay")
			if c != [2]float64{messages, messages} {
				t.Errorf("compressed messages %v, want %d each way", c, messages)
			}
			checkWire(t, "client -> upstream", upTap, messages, int64(inflated[0]))
			checkWire(t, "upstream -> client", clTap, messages, int64(inflated[1]))
		})
	}
}

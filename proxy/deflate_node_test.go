package proxy

// Compression with Node's ws (perMessageDeflate) through the gateway
// (test/node/deflate.mjs), checked on the wire at both ends.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"
)

func TestDeflateNode(t *testing.T) {
	t.Parallel()
	node, dir := nodeDir(t, "ws")
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

// TestDeflateNodeServer: Node's ws as the upstream, with perMessageDeflate
// (test/node/deflate-server.mjs), behind the gateway; gorilla (no context
// takeover) and coder (context takeover) as clients.
func TestDeflateNodeServer(t *testing.T) {
	t.Parallel()
	node, dir := nodeDir(t, "ws")
	for _, takeover := range []bool{false, true} {
		name := "no_context_takeover"
		if takeover {
			name = "context_takeover"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			args := []string{"deflate-server.mjs"}
			if takeover {
				args = append(args, "takeover")
			}
			cmd := exec.Command(node, args...)
			cmd.Dir = dir
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				stdin.Close() // the server exits when its input closes
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			})
			port := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
						port <- p
					}
				}
			}()
			var upURL string
			select {
			case p := <-port:
				upURL = "ws://127.0.0.1:" + p
			case <-time.After(10 * time.Second):
				t.Fatal("the node server did not start")
			}
			kv := []string{"max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"}
			if takeover {
				kv = append(kv, "permessage_deflate", "{context_takeover: true}")
			}
			gw := startGateway(t, relayYAML(upURL, kv...))
			msgs, types, _ := interopMessages()
			addr, clTap := tapProxy(t, gw.Addr)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if takeover {
				c, _, err := coder.Dial(ctx, "ws://"+addr+"/n", &coder.DialOptions{CompressionMode: coder.CompressionContextTakeover, CompressionThreshold: 1})
				if err != nil {
					t.Fatal(err)
				}
				defer c.CloseNow()
				c.SetReadLimit(1 << 20)
				coderEchoAll(ctx, t, c, msgs, types)
			} else {
				d := websocket.Dialer{EnableCompression: true}
				c, _, err := d.DialContext(ctx, "ws://"+addr+"/n", nil)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(relayIO))
				for i, m := range msgs {
					if err := c.WriteMessage(types[i], m); err != nil {
						t.Fatal(err)
					}
					if op, p, err := c.ReadMessage(); err != nil || op != types[i] || !bytes.Equal(p, m) {
						t.Fatalf("echo %d: op %d, %d bytes, %v", i, op, len(p), err)
					}
				}
				_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"))
				if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, 1000) {
					t.Fatalf("close: %v", err)
				}
			}
			m := sessionLog(t, gw, 1)
			if m["reason"] != "normal" || !strings.HasPrefix(fmt.Sprint(m["compression"]), "permessage-deflate") {
				t.Errorf("access log: %v", m)
			}
			n := float64(len(msgs))
			c, inflated := inflatedSeries(t, gw, "relay")
			if c != [2]float64{n, n} {
				t.Errorf("compressed messages %v, want %v each way", c, n)
			}
			checkWire(t, "upstream -> client", clTap, len(msgs), int64(inflated[1]))
		})
	}
}

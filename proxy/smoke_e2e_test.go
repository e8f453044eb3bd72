package proxy

import (
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// The demo route relays through the gateway to builtin:echo (README quick
// start), with messages around every length-encoding boundary (RFC 6455 §5.2).
func TestEchoRouteSmoke(t *testing.T) {
	gw := startGateway(t, "routes:\n  - name: demo\n    path: /echo\n    upstreams: [builtin:echo]\n")
	c, _, err := websocket.DefaultDialer.Dial(gw.URL+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, n := range []int{0, 125, 126, 65535, 65536, 1 << 20} {
		msg := strings.Repeat("é", n/2)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(p) != msg {
			t.Fatalf("echo of %d bytes differs", n)
		}
	}
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "done"))
	_, _, err = c.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 4000 || ce.Text != "done" {
		t.Fatalf("close: got %v, want 4000 done", err)
	}
}

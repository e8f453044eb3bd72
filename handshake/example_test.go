package handshake_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"wsgate/handshake"
)

// The accept value of RFC 6455 §1.3.
func ExampleAcceptKey() {
	fmt.Println(handshake.AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="))
	// Output: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
}

// A rejected handshake: a plain HTTP GET to a WebSocket endpoint.
func ExampleCheck() {
	r, _ := http.NewRequest(http.MethodGet, "http://example.com/chat", nil)
	_, rej := handshake.Check(r)
	fmt.Println(rej.Status, rej.Header.Get("Upgrade"))
	// Output: 426 websocket
}

// The gateway's order: check the client, handshake with the upstream, and
// only then answer the client's handshake.
func Example_gateway() {
	upstream, _ := url.Parse("ws://127.0.0.1:9000/chat")
	var dialer handshake.Dialer
	handler := func(w http.ResponseWriter, r *http.Request) {
		req, rej := handshake.Check(r)
		if rej != nil {
			handshake.WriteRejection(w, rej)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		up, err := dialer.Dial(ctx, upstream, http.Header{"Cookie": r.Header.Values("Cookie")}, req.Protocols)
		if err != nil {
			handshake.WriteRejection(w, &handshake.Rejection{Status: http.StatusBadGateway, Reason: "upstream failed"})
			return
		}
		conn, br, err := handshake.Upgrade(w, req, up.Protocol, http.Header{"Set-Cookie": up.Header.Values("Set-Cookie")})
		if err != nil {
			up.Conn.Close()
			return
		}
		// Relay frames between (conn, br) and (up.Conn, up.Reader)…
		_, _ = conn, br
	}
	_ = http.HandlerFunc(handler)
}

package listen

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wsgate/internal/config"
)

// TestUpgraded: once net/http has handed a connection over (hijacked it),
// the session keeps the TCP connection itself, not the listener's wrapper;
// before the hijack, or with the PROXY protocol reader in between, the
// connection stays as it is.
func TestUpgraded(t *testing.T) {
	t.Parallel()
	for _, proxy := range []bool{false, true} {
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gate := &Gate{Log: zerolog.Nop()}
		ln := gate.Wrap(inner, config.ServerConfig{ProxyProtocol: proxy, HandshakeTimeout: time.Minute}, false)
		client, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := Upgraded(conn); got != conn {
			t.Errorf("proxy=%v: before the hijack, Upgraded gave %T, want the wrapper", proxy, got)
		}
		ConnState(conn, http.StateHijacked)
		got := Upgraded(conn)
		switch _, isTCP := got.(*net.TCPConn); {
		case proxy && got != conn:
			t.Errorf("proxy=%v: Upgraded gave %T, want the wrapper (the PROXY reader is under it)", proxy, got)
		case !proxy && !isTCP:
			t.Errorf("proxy=%v: Upgraded gave %T, want the *net.TCPConn", proxy, got)
		}
		if other := Upgraded(client); other != client {
			t.Errorf("Upgraded changed a connection that is not the listener's")
		}
		conn.Close()
		client.Close()
		ln.Close()
	}
}

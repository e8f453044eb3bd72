package proxy

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
	"wsgate/internal/config"
	"wsgate/internal/testutil"

	"github.com/rs/zerolog"
)

// testGateway is a gateway serving on 127.0.0.1 for one test.
type testGateway struct {
	*Gateway
	Addr string      // host:port of the plain listener
	URL  string      // "ws://" + Addr
	Logs *syncBuffer // everything the gateway logged (JSON lines)
	stop func()      // shuts down and waits
}

// startGateway loads yamlText as a config file (listen addresses in it are
// ignored: the gateway serves a fresh 127.0.0.1 port) and serves it until the
// test ends.
func startGateway(t testing.TB, yamlText string) *testGateway {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	g, err := New(cfg, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		_ = g.Serve(ctx, &Listeners{Plain: ln})
		close(done)
	}()
	tg := &testGateway{Gateway: g, Addr: ln.Addr().String(), URL: "ws://" + ln.Addr().String(), Logs: logs}
	var once sync.Once
	tg.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("gateway did not stop within 10s")
			}
		})
	}
	t.Cleanup(tg.stop)
	return tg
}

// syncBuffer is the gateway log of a test.
type syncBuffer = testutil.LogBuffer

// clientTCP are the TCP connections of the clients of g's open sessions.
func (g *Gateway) clientTCP() []*net.TCPConn {
	var out []*net.TCPConn
	for _, s := range g.reg.list() {
		// The session holds the TCP connection itself, or a layer over it
		// (TLS, the PROXY protocol reader's wrapper).
		c := s.ClientConn()
		for {
			if u, ok := c.(interface{ NetConn() net.Conn }); ok {
				c = u.NetConn()
				continue
			}
			break
		}
		if tc, ok := c.(*net.TCPConn); ok {
			out = append(out, tc)
		}
	}
	return out
}

package proxy

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"wsgate/internal/config"

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

// syncBuffer is a bytes.Buffer safe for the gateway's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Lines returns the logged lines that contain every one of substrs.
func (s *syncBuffer) Lines(substrs ...string) []string {
	var out []string
	for _, l := range strings.Split(s.String(), "\n") {
		ok := l != ""
		for _, sub := range substrs {
			ok = ok && strings.Contains(l, sub)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// clientConns are the client connections of g's open sessions.
func (g *Gateway) clientConns() []*gateConn {
	var out []*gateConn
	for _, s := range g.reg.list() {
		if c, ok := s.ClientConn().(*gateConn); ok {
			out = append(out, c)
		}
	}
	return out
}

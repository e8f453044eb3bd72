package interop

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"

	"wsgate/handshake"
)

// theirServer is an echo server built on a third-party library, listening
// on 127.0.0.1. It reports what its library tells it (pings, pongs, the
// Close it read) as events in the format of rec.String, so tests compare
// them with what our client did.
//
// Like our echo server it takes two commands as single text messages:
// "cmd:ping:<payload>" makes it ping (coder chooses its own payload), and
// "cmd:close:<code>:<reason>" makes it start the closing handshake. The
// query parameter split=N makes it echo in fragments of N bytes as far as
// its API allows; without it, each message goes back as one frame.
type theirServer struct {
	name   string
	coder  bool // coder/websocket: its Ping chooses the payload and reports back
	url    string
	events chan string
	wg     sync.WaitGroup // running handlers
}

func (s *theirServer) event(format string, args ...any) {
	select {
	case s.events <- fmt.Sprintf(format, args...):
	default: // the test has stopped listening
	}
}

// expectEvents checks the next events are want, in order.
func (s *theirServer) expectEvents(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	for range want {
		select {
		case ev := <-s.events:
			got = append(got, ev)
		case <-time.After(ioTimeout):
			got = append(got, "(nothing)")
		}
	}
	sameLines(t, s.name+" server events", got, want)
}

func startTheirServer(t *testing.T, name string, handler func(s *theirServer, w http.ResponseWriter, r *http.Request)) *theirServer {
	t.Helper()
	s := &theirServer{name: name, coder: name == "coder", events: make(chan string, 1024)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.wg.Add(1)
		defer s.wg.Done()
		handler(s, w, r)
	}))
	s.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/echo"
	t.Cleanup(func() {
		srv.Close()
		s.wg.Wait() // our connections are closed by now (cleanups run last first)
	})
	return s
}

// dial connects our client (handshake.Dialer) and wraps the upstream in an
// endpoint that reads through Upstream.Reader, so frames sent right behind
// the 101 are not lost.
func (s *theirServer) dial(t *testing.T, split int) *endpoint {
	t.Helper()
	u, err := url.Parse(s.url)
	if err != nil {
		t.Fatal(err)
	}
	if split > 0 {
		u.RawQuery = "split=" + strconv.Itoa(split)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	up, err := (&handshake.Dialer{}).Dial(ctx, u, nil, nil)
	if err != nil {
		t.Fatalf("our Dial to %s: %v", s.name, err)
	}
	t.Cleanup(func() { _ = up.Conn.Close() })
	return newEndpoint(up.Conn, up.Reader, true)
}

// parseCmd reads "cmd:ping:<payload>" and "cmd:close:<code>:<reason>".
func parseCmd(p []byte) (cmd, arg string, code int) {
	rest, ok := strings.CutPrefix(string(p), "cmd:")
	if !ok {
		return "", "", 0
	}
	if arg, ok := strings.CutPrefix(rest, "ping:"); ok {
		return "ping", arg, 0
	}
	if arg, ok := strings.CutPrefix(rest, "close:"); ok {
		codeText, reason, _ := strings.Cut(arg, ":")
		code, _ := strconv.Atoi(codeText)
		return "close", reason, code
	}
	return "", "", 0
}

func split(r *http.Request) int {
	n, _ := strconv.Atoi(r.URL.Query().Get("split"))
	return n
}

// startGorilla starts a gorilla/websocket Upgrader echo server.
func startGorilla(t *testing.T) *theirServer {
	return startTheirServer(t, "gorilla", func(s *theirServer, w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			s.event("upgrade: %v", err)
			return
		}
		defer c.Close()
		closing := false
		c.SetPingHandler(func(p string) error {
			s.event("ping %q", p)
			err := c.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(ioTimeout))
			if errors.Is(err, websocket.ErrCloseSent) {
				return nil
			}
			return err
		})
		c.SetPongHandler(func(p string) error {
			s.event("pong %q", p)
			return nil
		})
		// Answer a Close with its code and reason (gorilla's default
		// answer drops the reason); a Close that answers ours is not
		// answered.
		c.SetCloseHandler(func(code int, text string) error {
			if closing {
				return nil
			}
			return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(ioTimeout))
		})
		for {
			_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
			typ, p, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					s.event("close %d %q", ce.Code, ce.Text)
				} else {
					s.event("read: %v", err)
				}
				return
			}
			deadline := time.Now().Add(ioTimeout)
			_ = c.SetWriteDeadline(deadline)
			if typ == websocket.TextMessage {
				switch cmd, arg, code := parseCmd(p); cmd {
				case "ping":
					err = c.WriteControl(websocket.PingMessage, []byte(arg), deadline)
				case "close":
					closing = true
					if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, arg), deadline); err != nil {
						s.event("write close: %v", err)
						return
					}
					continue
				}
			}
			if err == nil {
				err = gorillaWrite(c, typ, p, split(r))
			}
			if err != nil {
				s.event("write: %v", err)
				return
			}
		}
	})
}

// gorillaWrite echoes p. Without split it is one frame (WriteMessage on a
// server connection writes a single frame). With split, each Write of more
// than twice gorilla's buffer becomes a frame of its own, and the rest is
// flushed as the buffer fills and on Close.
func gorillaWrite(c *websocket.Conn, typ int, p []byte, split int) error {
	if split == 0 {
		return c.WriteMessage(typ, p)
	}
	w, err := c.NextWriter(typ)
	if err != nil {
		return err
	}
	for off := 0; off < len(p); off += split {
		if _, err := w.Write(p[off:min(off+split, len(p))]); err != nil {
			return err
		}
	}
	return w.Close()
}

// startCoder starts a coder/websocket Accept echo server.
func startCoder(t *testing.T) *theirServer {
	return startTheirServer(t, "coder", func(s *theirServer, w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, &coder.AcceptOptions{
			OnPingReceived: func(_ context.Context, p []byte) bool {
				s.event("ping %q", p)
				return true
			},
			OnPongReceived: func(_ context.Context, p []byte) {
				s.event("pong %q", p)
			},
		})
		if err != nil {
			s.event("accept: %v", err)
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(maxPayload) // coder's default is 32 KiB
		ctx, cancel := context.WithTimeout(context.Background(), 3*ioTimeout)
		defer cancel()
		var helpers sync.WaitGroup
		defer helpers.Wait()
		var closed chan error
		for {
			typ, p, err := c.Read(ctx)
			if err != nil {
				var ce coder.CloseError
				if errors.As(err, &ce) && coder.CloseStatus(err) == ce.Code {
					s.event("close %d %q", ce.Code, ce.Reason)
				} else {
					s.event("read: %v", err)
				}
				if closed != nil {
					s.event("Close: %v", <-closed)
				}
				return
			}
			if typ == coder.MessageText {
				switch cmd, arg, code := parseCmd(p); cmd {
				case "ping":
					// coder's Ping waits for the pong, which only a Read
					// can see: ping from a helper, echo once answered.
					helpers.Add(1)
					go func() {
						defer helpers.Done()
						if err := c.Ping(ctx); err != nil {
							s.event("Ping: %v", err)
							return
						}
						s.event("Ping answered")
						if err := coderWrite(ctx, c, typ, p, split(r)); err != nil {
							s.event("write: %v", err)
						}
					}()
					continue
				case "close":
					// coder's Close reads the answer itself unless a Read
					// is in progress. A Ping answered first means this
					// loop is inside Read, so the answer, reason included,
					// reaches it.
					closed = make(chan error, 1)
					go func() {
						if err := c.Ping(ctx); err != nil {
							closed <- err
							return
						}
						closed <- c.Close(coder.StatusCode(code), arg)
					}()
					continue
				}
			}
			if err := coderWrite(ctx, c, typ, p, split(r)); err != nil {
				s.event("write: %v", err)
				return
			}
		}
	})
}

// coderWrite echoes p. Without split it is one frame (Write); with split
// every Write of the message writer is a frame and Close adds an empty
// final one.
func coderWrite(ctx context.Context, c *coder.Conn, typ coder.MessageType, p []byte, split int) error {
	if split == 0 {
		return c.Write(ctx, typ, p)
	}
	w, err := c.Writer(ctx, typ)
	if err != nil {
		return err
	}
	for off := 0; off < len(p); off += split {
		if _, err := w.Write(p[off:min(off+split, len(p))]); err != nil {
			return err
		}
	}
	return w.Close()
}

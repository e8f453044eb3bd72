package interop

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/handshake"
)

// ourServer is an http.Server on 127.0.0.1 whose handler accepts with
// handshake.Check and handshake.Upgrade and then runs an echo loop written
// on package frame only.
type ourServer struct {
	t        *testing.T
	url      string
	accepted chan *serverConn

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup // running echo loops
}

func startOurServer(t *testing.T) *ourServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &ourServer{
		t:        t,
		url:      "ws://" + ln.Addr().String() + "/echo",
		accepted: make(chan *serverConn, 16),
		conns:    make(map[net.Conn]struct{}),
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: ioTimeout}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		_ = hs.Close()
		// http.Server does not know hijacked connections: close them and
		// join their loops, so no goroutine outlives the test.
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *ourServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, rej := handshake.Check(r)
	if rej != nil {
		handshake.WriteRejection(w, rej)
		s.t.Errorf("our server rejected the handshake: %v", rej)
		return
	}
	conn, br, err := handshake.Upgrade(w, req, "", nil)
	if err != nil {
		s.t.Errorf("Upgrade: %v", err)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = conn.Close()
		return
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	sc := &serverConn{e: newEndpoint(conn, br, false), done: make(chan struct{})}
	s.accepted <- sc
	sc.run()
}

// next returns the server side of the next accepted connection.
func (s *ourServer) next(t *testing.T) *serverConn {
	t.Helper()
	select {
	case sc := <-s.accepted:
		return sc
	case <-time.After(ioTimeout):
		t.Fatal("our server accepted no connection")
		return nil
	}
}

// serverConn is the server side of one connection: the echo loop and the
// log of what it read and wrote, for the test to read once done is closed.
type serverConn struct {
	e    *endpoint
	done chan struct{}

	got  []rec // every frame read
	sent []rec // every frame written
	err  error // why the loop stopped, if not a closing handshake
}

// wait waits for the loop to end and returns the frames it read and wrote.
func (sc *serverConn) wait(t *testing.T) (got, sent []string) {
	t.Helper()
	select {
	case <-sc.done:
	case <-time.After(2 * ioTimeout):
		t.Fatal("our server's connection did not end")
	}
	return lines(sc.got), lines(sc.sent)
}

func (sc *serverConn) write(fin bool, op frame.Opcode, p []byte) bool {
	sc.sent = append(sc.sent, recOf(fin, op, p))
	if err := sc.e.writeFrame(fin, op, p); err != nil {
		sc.err = err
		return false
	}
	return true
}

// run is the echo loop. It echoes every data message with the
// fragmentation it arrived in (RFC 6455 §5.4), answers every ping at once
// with a pong carrying the same payload (§5.5.2, §5.5.3), and answers a
// Close with the same code and reason, then closes the TCP connection
// first, as the server should (§7.1.1, §7.1.2). A violation fails the
// connection with the close code it implies (§7.1.7).
//
// A message is echoed once its last fragment has arrived, so a peer that
// writes a whole message before reading cannot deadlock against it. Where
// a ping arrived between two fragments, the echo carries a ping of ours
// ("echo:" and the same payload) at the same place, so the peer has to
// handle a control frame inside a fragmented message too.
//
// Two single-frame text messages are commands rather than data:
// "cmd:ping:<payload>" makes the server ping with that payload before
// echoing, and "cmd:close:<code>:<reason>" makes it start the closing
// handshake.
func (sc *serverConn) run() {
	defer close(sc.done)
	defer sc.e.conn.Close()
	type out struct {
		fin bool
		op  frame.Opcode
		p   []byte
	}
	var pending []out
	closing := false
	for {
		h, p, err := sc.e.readFrame()
		if err != nil {
			sc.err = err
			sc.e.fail(err)
			return
		}
		sc.got = append(sc.got, recOf(h.Fin, h.Opcode, p))
		switch h.Opcode {
		case frame.OpPing:
			if !closing && !sc.write(true, frame.OpPong, p) {
				return
			}
			if sc.e.msg.InMessage() {
				pending = append(pending, out{true, frame.OpPing, append([]byte("echo:"), p[:min(len(p), frame.MaxControlPayload-5)]...)})
			}
		case frame.OpPong:
		case frame.OpClose:
			code, reason, err := frame.ParseClose(p)
			if err != nil {
				sc.err = err
				sc.e.fail(err)
				return
			}
			if !closing {
				sc.write(true, frame.OpClose, frame.AppendClose(nil, code, string(reason)))
			}
			return
		default:
			if closing {
				continue // §5.5.1: data after our Close is read and dropped
			}
			pending = append(pending, out{h.Fin, h.Opcode, p})
			if !h.Fin {
				continue
			}
			if cmd, ok := bytes.CutPrefix(p, []byte("cmd:")); ok && len(pending) == 1 && h.Opcode == frame.OpText {
				if arg, ok := bytes.CutPrefix(cmd, []byte("ping:")); ok {
					if !sc.write(true, frame.OpPing, arg) {
						return
					}
				} else if arg, ok := bytes.CutPrefix(cmd, []byte("close:")); ok {
					codeText, reason, _ := strings.Cut(string(arg), ":")
					code, _ := strconv.Atoi(codeText)
					if !sc.write(true, frame.OpClose, frame.AppendClose(nil, frame.CloseCode(code), reason)) {
						return
					}
					closing, pending = true, pending[:0]
					continue
				}
			}
			for _, f := range pending {
				if !sc.write(f.fin, f.op, f.p) {
					return
				}
			}
			pending = pending[:0]
		}
	}
}

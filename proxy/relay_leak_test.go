package proxy

// No leaks: 1,000 sessions ended in each way a session can end leave no
// goroutine behind (both pumps joined, both conns closed, every peer done).
// Not parallel: runtime.NumGoroutine counts the whole process.

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/internal/wstest"
)

const (
	leakSessions    = 1000
	leakConcurrency = 100
)

// leakWay is one way of ending a session: what the raw client and the raw
// upstream do first, and the Close code each must then receive.
type leakWay struct {
	name     string
	cfg      []string
	client   func(c *wstest.Peer) error // after the handshake
	upstream func(u *wstest.Peer) error // after the handshake, before its echo loop
	cCode    int                        // the Close the client gets; 0: none (it left)
	uCode    int                        // the Close the upstream gets; 0: none
}

// leakUpstream is the upstream side of every way: a first step, then an
// echo loop that replies to a Close with the same payload and hangs up (a
// server closes the TCP connection first, RFC 6455 §7.1.1).
func leakUpstream(first func(u *wstest.Peer) error, want int, fails *atomic.Int64, firstErr *atomic.Value) func(u *wstest.Peer) {
	fail := func(err error) {
		fails.Add(1)
		// As text: errors of different types in one atomic.Value panic.
		firstErr.CompareAndSwap(nil, err.Error())
	}
	return func(u *wstest.Peer) {
		defer u.Conn.Close()
		if first != nil {
			if err := first(u); err != nil {
				fail(fmt.Errorf("upstream first step: %w", err))
				return
			}
		}
		for {
			f, err := u.Read()
			if err != nil {
				if want != 0 {
					fail(fmt.Errorf("upstream: %w before a Close", err))
				}
				return
			}
			switch f.Opcode {
			case frame.OpText, frame.OpBinary:
				if err := u.WriteErr(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: f.Opcode}, f.Payload)); err != nil {
					return
				}
			case frame.OpPing: // stay alive under the gateway's keepalive
				if err := u.WriteErr(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpPong}, f.Payload)); err != nil {
					return
				}
			case frame.OpClose:
				if got := closeCodeOf(f.Payload); got != want {
					fail(fmt.Errorf("upstream got Close %d, want %d", got, want))
				}
				_ = u.WriteErr(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpClose}, f.Payload))
				return
			}
		}
	}
}

func closeCodeOf(p []byte) int {
	if len(p) < 2 {
		return 1005
	}
	return int(p[0])<<8 | int(p[1])
}

// leakClient runs the client side of one session: its first step, then
// read until the gateway's Close, answer it, and wait for the gateway's FIN.
func leakClient(addr string, w leakWay) error {
	c, err := wstest.DialRawErr(addr, "/")
	if err != nil {
		return err
	}
	defer c.Conn.Close()
	if w.client != nil {
		if err := w.client(c); err != nil {
			return err
		}
	}
	if w.cCode == 0 {
		return nil
	}
	for {
		f, err := c.Read()
		if err != nil {
			return fmt.Errorf("client: %w before a Close", err)
		}
		if f.Opcode != frame.OpClose {
			continue
		}
		if got := closeCodeOf(f.Payload); got != w.cCode {
			return fmt.Errorf("client got Close %d, want %d", got, w.cCode)
		}
		if err := c.WriteErr(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpClose, Masked: true, Key: frame.NewKey()}, f.Payload)); err != nil {
			return err
		}
		break
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(relayIO))
	var buf [512]byte
	for {
		if _, err := c.BR.Read(buf[:]); err != nil {
			return nil
		}
	}
}

func sendFrame(p *wstest.Peer, h frame.Header, payload []byte) error {
	return p.WriteErr(frame.AppendFrame(nil, h, payload))
}

func TestRelayNoLeaks(t *testing.T) {
	masked := func(op frame.Opcode) frame.Header {
		return frame.Header{Fin: true, Opcode: op, Masked: true, Key: frame.NewKey()}
	}
	echo := func(c *wstest.Peer) error {
		if err := sendFrame(c, masked(frame.OpText), []byte("hello")); err != nil {
			return err
		}
		f, err := c.Read()
		if err != nil || string(f.Payload) != "hello" {
			return fmt.Errorf("echo: %v %v", f, err)
		}
		return nil
	}
	ways := []leakWay{
		{name: "client-close", client: func(c *wstest.Peer) error {
			if err := echo(c); err != nil {
				return err
			}
			return sendFrame(c, masked(frame.OpClose), wstest.ClosePayload(1000, ""))
		}, cCode: 1000, uCode: 1000},
		{name: "upstream-close", upstream: func(u *wstest.Peer) error {
			return sendFrame(u, frame.Header{Fin: true, Opcode: frame.OpClose}, wstest.ClosePayload(4000, "bye"))
		}, cCode: 4000, uCode: 4000},
		{name: "client-protocol-error", client: func(c *wstest.Peer) error {
			if err := echo(c); err != nil {
				return err
			}
			return sendFrame(c, frame.Header{Fin: true, Opcode: frame.OpText}, []byte("unmasked"))
		}, cCode: 1002, uCode: 1001},
		{name: "upstream-protocol-error", upstream: func(u *wstest.Peer) error {
			return sendFrame(u, frame.Header{Fin: true, Opcode: frame.OpText, Rsv: frame.Rsv2}, []byte("rsv"))
		}, cCode: 1014, uCode: 1002},
		{name: "client-gone", client: func(c *wstest.Peer) error {
			if err := echo(c); err != nil {
				return err
			}
			c.Conn.Close()
			return nil
		}, cCode: 0, uCode: 1001},
		{name: "upstream-gone", upstream: func(u *wstest.Peer) error {
			u.Conn.Close()
			return nil
		}, cCode: 1014, uCode: 0},
		{name: "idle", cfg: []string{"idle_timeout", "100ms"}, cCode: 1001, uCode: 1001},
		{name: "client-bad-utf8", client: func(c *wstest.Peer) error {
			return sendFrame(c, masked(frame.OpText), []byte("bad \xff"))
		}, cCode: 1007, uCode: 1001},
		{name: "client-too-big", cfg: []string{"max_frame_bytes", "1KiB"}, client: func(c *wstest.Peer) error {
			return sendFrame(c, masked(frame.OpBinary), make([]byte, 2048))
		}, cCode: 1009, uCode: 1001},
		{name: "upstream-bad-utf8", upstream: func(u *wstest.Peer) error {
			return sendFrame(u, frame.Header{Fin: true, Opcode: frame.OpText}, []byte("bad \xed\xa0\x80"))
		}, cCode: 1014, uCode: 1007},
		{name: "upstream-too-big", cfg: []string{"max_message_bytes", "1KiB"}, upstream: func(u *wstest.Peer) error {
			return sendFrame(u, frame.Header{Fin: true, Opcode: frame.OpBinary}, make([]byte, 2048))
		}, cCode: 1014, uCode: 1009},
		// The upstream answers pings; pong_timeout leaves it slack on a
		// loaded machine (under -race its goroutine may wait its turn).
		{name: "client-pong-timeout", cfg: []string{"ping_interval", "100ms", "pong_timeout", "250ms"}, client: func(c *wstest.Peer) error {
			time.Sleep(700 * time.Millisecond) // silent: no frame at all
			return nil
		}, cCode: 0, uCode: 1001},
		{name: "upstream-never-answers-close", cfg: []string{"close_timeout", "100ms"},
			client: func(c *wstest.Peer) error {
				return sendFrame(c, masked(frame.OpClose), wstest.ClosePayload(1000, ""))
			},
			upstream: func(u *wstest.Peer) error {
				for { // take the relayed Close, answer nothing
					f, err := u.Read()
					if err != nil {
						return err
					}
					if f.Opcode == frame.OpClose {
						if got := closeCodeOf(f.Payload); got != 1000 {
							return fmt.Errorf("upstream got Close %d, want 1000", got)
						}
						return nil
					}
				}
			}, cCode: 1000, uCode: 0},
		{name: "truncated-mid-frame", client: func(c *wstest.Peer) error {
			h := masked(frame.OpBinary)
			h.Length = 64 << 10
			if err := c.WriteErr(frame.AppendHeader(nil, h)); err != nil {
				return err
			}
			if err := c.WriteErr(make([]byte, 20<<10)); err != nil { // more than one streamed chunk
				return err
			}
			time.Sleep(20 * time.Millisecond)
			c.Conn.Close()
			return nil
		}, cCode: 0, uCode: 0},
	}
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			var fails atomic.Int64
			var firstErr atomic.Value
			up := newRawUpstream(t, leakUpstream(w.upstream, w.uCode, &fails, &firstErr))
			gw := startGateway(t, relayYAML(up.URL, append([]string{"close_timeout", "1s", "server.max_pending_per_ip", "0"}, w.cfg...)...))
			runtime.GC()
			base := runtime.NumGoroutine()
			start := time.Now()
			sem := make(chan struct{}, leakConcurrency)
			var wg sync.WaitGroup
			for range leakSessions {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done() }()
					if err := leakClient(gw.Addr, w); err != nil {
						fails.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}()
			}
			wg.Wait()
			ran := time.Since(start)
			var n int
			deadline := time.Now().Add(5 * time.Second)
			for {
				n = runtime.NumGoroutine()
				if (n <= base+5 && gw.Sessions() == 0) || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("%d sessions in %v; goroutines: baseline %d, after %d (settled %v later); open sessions %d",
				leakSessions, ran.Round(time.Millisecond), base, n, time.Since(start.Add(ran)).Round(time.Millisecond), gw.Sessions())
			if f := fails.Load(); f > 0 {
				t.Errorf("%d sessions failed; first: %v", f, firstErr.Load())
			}
			if n > base+5 || gw.Sessions() != 0 {
				buf := make([]byte, 1<<20)
				t.Errorf("goroutines: %d after, baseline %d; sessions open: %d\n%s", n, base, gw.Sessions(), buf[:runtime.Stack(buf, true)])
			}
			if lines := len(gw.Logs.Lines(`"event":"session"`)); lines != leakSessions {
				t.Errorf("%d access log lines, want %d", lines, leakSessions)
			}
		})
	}
}

package proxy

// Keepalive (docs/relay.md: ping_interval, pong_timeout) and
// write_timeout, end to end. The timing tests are not parallel: they measure
// detection times and must not share the two cores with the streaming tests.

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/internal/wstest"
)

var keepaliveCfg = []string{"ping_interval", "200ms", "pong_timeout", "200ms"}

// detectSlack is how late past ping_interval + pong_timeout a silent peer
// may be found (scheduling on a loaded two-core machine, -race).
const detectSlack = 400 * time.Millisecond

// A client that sends nothing at all (and reads nothing) is gone within
// ping_interval + pong_timeout: the upstream gets 1001.
func TestRelayKeepaliveSilentClient(t *testing.T) {
	up := newGorillaUpstream(t, nil) // reads, so it answers the gateway's pings
	gw := startGateway(t, relayYAML(up.URL, keepaliveCfg...))
	c := wstest.DialRaw(t, gw.Addr, "/")
	start := time.Now()
	up.expectClose(t, 1001, "client gone")
	el := time.Since(start)
	t.Logf("silent client found after %v (ping_interval + pong_timeout = 400ms)", el.Round(time.Millisecond))
	if el < 350*time.Millisecond || el > 400*time.Millisecond+detectSlack {
		t.Errorf("silent client found after %v, want 400ms (+%v)", el, detectSlack)
	}
	// It was pinged (once: the gateway waits for any frame, not a pong per
	// ping), with no Close: it is gone, not closed.
	f, err := c.Read()
	if err != nil || f.Opcode != frame.OpPing || len(f.Payload) != 8 {
		t.Errorf("client: got %v %v, want the gateway's ping", f, err)
	}
	if f, err := c.Read(); err == nil {
		t.Errorf("client: got %v after the ping, want the connection dropped", f)
	}
	expectLog(t, gw, "reason", "client_gone", "closed_by", "client", "client_close_code", "none",
		"upstream_close_code", "1001", "upstream_close_reason", "client gone")
}

// An upstream that sends nothing at all is gone likewise: the client gets
// upstream_failure_code.
func TestRelayKeepaliveSilentUpstream(t *testing.T) {
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, keepaliveCfg...))
	c := coderDial(t, gw) // reads, so it answers the gateway's pings
	u := recvPeer(t, ups)
	start := time.Now()
	coderExpectClose(t, c, 1014, "upstream gone")
	el := time.Since(start)
	t.Logf("silent upstream found after %v", el.Round(time.Millisecond))
	if el > 400*time.Millisecond+detectSlack {
		t.Errorf("silent upstream found after %v, want 400ms (+%v)", el, detectSlack)
	}
	if f := u.Next(); f.Opcode != frame.OpPing || !f.Masked || len(f.Payload) != 8 {
		t.Errorf("upstream got %v, want the gateway's masked ping", f)
	}
	expectLog(t, gw, "reason", "upstream_gone", "closed_by", "upstream", "client_close_code", "1014", "upstream_close_code", "none")
}

// pingAnswerer reads frames from p on its own goroutine and hands each to
// on, until stop or an error.
func pingAnswerer(p *wstest.Peer, on func(f wstest.Frame)) (stop func()) {
	var quit atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !quit.Load() {
			_ = p.Conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			f, err := readNoDeadline(p)
			if err != nil {
				if isTimeout(err) {
					continue
				}
				return
			}
			on(f)
		}
	}()
	return func() {
		quit.Store(true)
		<-done
		_ = p.Conn.SetReadDeadline(time.Time{})
	}
}

// readNoDeadline is read with the header under the deadline already set
// (short, so a pingAnswerer notices stop) and the payload under relayIO.
func readNoDeadline(p *wstest.Peer) (wstest.Frame, error) {
	h, err := frame.ReadHeader(p.BR, frame.Rules{})
	if err != nil {
		return wstest.Frame{}, err
	}
	_ = p.Conn.SetReadDeadline(time.Now().Add(relayIO))
	b := make([]byte, h.Length)
	if _, err := io.ReadFull(p.BR, b); err != nil {
		return wstest.Frame{}, err
	}
	if h.Masked {
		frame.Mask(h.Key, 0, b)
	}
	return wstest.Frame{Header: h, Payload: b}, nil
}

// frameLog collects frames seen by a peer.
type frameLog struct {
	mu sync.Mutex
	fs []wstest.Frame
}

func (l *frameLog) add(f wstest.Frame) {
	l.mu.Lock()
	l.fs = append(l.fs, f)
	l.mu.Unlock()
}

func (l *frameLog) count(op frame.Opcode, match func(p []byte) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, f := range l.fs {
		if f.Opcode == op && (match == nil || match(f.Payload)) {
			n++
		}
	}
	return n
}

func isGatewayPing(p []byte) bool { return len(p) == 8 && !bytes.HasPrefix(p, []byte("up-")) }

// Both peers answer every ping at once: the gateway's keepalive pongs are
// consumed on each leg and never reach the other side.
func TestRelayKeepalivePongsConsumed(t *testing.T) {
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, keepaliveCfg...))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	var cl, ul frameLog
	answer := func(p *wstest.Peer, l *frameLog) func(f wstest.Frame) {
		return func(f wstest.Frame) {
			l.add(f)
			if f.Opcode == frame.OpPing {
				_ = p.WriteErr(frame.AppendFrame(nil, p.Header(true, frame.OpPong), f.Payload))
			}
		}
	}
	stopC := pingAnswerer(c, answer(c, &cl))
	stopU := pingAnswerer(u, answer(u, &ul))
	time.Sleep(1200 * time.Millisecond)
	stopC()
	stopU()
	if n := cl.count(frame.OpPing, isGatewayPing); n < 3 {
		t.Errorf("client got %d keepalive pings in 1.2s, want >= 3", n)
	}
	if n := ul.count(frame.OpPing, isGatewayPing); n < 3 {
		t.Errorf("upstream got %d keepalive pings in 1.2s, want >= 3", n)
	}
	if n := cl.count(frame.OpPong, nil); n != 0 {
		t.Errorf("client got %d pongs: the upstream's answers to keepalive pings were forwarded", n)
	}
	if n := ul.count(frame.OpPong, nil); n != 0 {
		t.Errorf("upstream got %d pongs: the client's answers to keepalive pings were forwarded", n)
	}
	echoCheckRaw(c, u, "still here")
	c.SendClose(1000, "")
	u.ExpectClose(1000, "")
	u.SendClose(1000, "")
	u.Conn.Close()
	c.ExpectClose(1000, "")
	expectLog(t, gw, "reason", "normal", "c2u_frames", itoa(2+cl.count(frame.OpPing, nil)))
}

// A client that answers only the latest of several pings (RFC 6455 §5.5.3),
// and one that never answers but sends data, are not killed.
func TestRelayKeepaliveLenient(t *testing.T) {
	for _, mode := range []string{"latest-ping-only", "data-only"} {
		t.Run(mode, func(t *testing.T) {
			up, ups := rawUpstreamChan(t)
			gw := startGateway(t, relayYAML(up.URL, keepaliveCfg...))
			c := wstest.DialRaw(t, gw.Addr, "/")
			u := recvPeer(t, ups)
			// The upstream answers the gateway's pings, echoes data, and
			// (latest-ping-only) sends pings of its own every 50ms.
			var ul frameLog
			stopU := pingAnswerer(u, func(f wstest.Frame) {
				ul.add(f)
				switch f.Opcode {
				case frame.OpPing:
					_ = u.WriteErr(frame.AppendFrame(nil, u.Header(true, frame.OpPong), f.Payload))
				case frame.OpText:
					_ = u.WriteErr(frame.AppendFrame(nil, u.Header(true, frame.OpText), f.Payload))
				}
			})
			var latest atomic.Pointer[[]byte]
			var cl frameLog
			stopC := pingAnswerer(c, func(f wstest.Frame) {
				cl.add(f)
				if f.Opcode == frame.OpPing {
					latest.Store(&f.Payload)
				}
			})
			deadline := time.Now().Add(time.Second)
			var i int
			for time.Now().Before(deadline) {
				i++
				if mode == "latest-ping-only" {
					_ = u.WriteErr(frame.AppendFrame(nil, u.Header(true, frame.OpPing), []byte("up-"+itoa(i))))
					if i%3 == 0 {
						// Every 150ms: one pong, to the latest ping only.
						if p := latest.Swap(nil); p != nil {
							c.Send(true, frame.OpPong, *p)
						}
					}
				} else if i%3 == 0 {
					c.Send(true, frame.OpText, []byte("data "+itoa(i)))
				}
				time.Sleep(50 * time.Millisecond)
			}
			stopC()
			stopU()
			if mode == "latest-ping-only" {
				if n := cl.count(frame.OpPing, func(p []byte) bool { return bytes.HasPrefix(p, []byte("up-")) }); n < 12 {
					t.Errorf("client got %d of the upstream's pings, want >= 12", n)
				}
				answered := ul.count(frame.OpPong, func(p []byte) bool { return bytes.HasPrefix(p, []byte("up-")) })
				if all := ul.count(frame.OpPong, nil); answered == 0 || all != answered {
					t.Errorf("upstream got %d pongs, %d of them to its own pings", all, answered)
				}
			} else if n := cl.count(frame.OpPing, isGatewayPing); n > 1 {
				// One may go out before the first data frame.
				t.Errorf("client sending data every 150ms got %d keepalive pings, want <= 1", n)
			}
			echoCheckRaw(c, u, "alive")
			c.SendClose(1000, "")
			u.ExpectClose(1000, "")
			u.SendClose(1000, "")
			u.Conn.Close()
			c.ExpectClose(1000, "")
			expectLog(t, gw, "reason", "normal")
		})
	}
}

// A client inside one slow large frame cannot answer pings (control frames
// go only between frames): its payload bytes keep it alive.
func TestRelayKeepaliveSlowFrame(t *testing.T) {
	up, ups := rawUpstreamChan(t)
	// Longer than keepaliveCfg's, so that a stall of the loaded machine
	// between two pieces does not look like silence; still, the frame
	// lasts well past ping_interval + pong_timeout.
	gw := startGateway(t, relayYAML(up.URL, "ping_interval", "300ms", "pong_timeout", "600ms", "max_frame_bytes", "8MiB", "max_message_bytes", "8MiB"))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	const piece, pieces = 32 << 10, 60 // 1.9 MiB over 60 x 30ms = 1.8s
	h := c.Header(true, frame.OpBinary)
	h.Length = piece * pieces
	payload := pattern(piece*pieces, 9)
	masked := bytes.Clone(payload)
	frame.Mask(h.Key, 0, masked)
	done := make(chan error, 1)
	go func() {
		if err := c.WriteErr(frame.AppendHeader(nil, h)); err != nil {
			done <- err
			return
		}
		for i := range pieces {
			time.Sleep(30 * time.Millisecond)
			if err := c.WriteErr(masked[i*piece : (i+1)*piece]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// The upstream answers the gateway's pings (it may get one before the
	// frame starts) and hands data frames over.
	data := make(chan wstest.Frame, 4)
	stopU := pingAnswerer(u, func(f wstest.Frame) {
		if f.Opcode == frame.OpPing {
			_ = u.WriteErr(frame.AppendFrame(nil, u.Header(true, frame.OpPong), f.Payload))
			return
		}
		data <- f
	})
	recv := func() wstest.Frame {
		select {
		case f := <-data:
			return f
		case <-time.After(relayIO):
			t.Fatal("upstream got no data frame")
			return wstest.Frame{}
		}
	}
	f := recv()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.Opcode != frame.OpBinary || !bytes.Equal(f.Payload, payload) {
		t.Fatalf("upstream got %v", f)
	}
	// The pings the gateway now sends the client are answered (any frame).
	c.Send(true, frame.OpText, []byte("ok"))
	if f := recv(); string(f.Payload) != "ok" {
		t.Fatalf("upstream got %v", f)
	}
	stopU()
	c.SendClose(1000, "")
	u.ExpectClose(1000, "")
	u.SendClose(1000, "")
	u.Conn.Close()
	code, _, _ := c.ReadClose()
	t.Logf("a %d-byte frame over %v: not killed", h.Length, time.Duration(pieces)*30*time.Millisecond)
	if code != 1000 {
		t.Errorf("client got Close %d", code)
	}
	expectLog(t, gw, "reason", "normal", "truncated", "false")
}

// Pings and pongs of the peers are relayed end to end, payload intact.
func TestRelayPingPongEndToEnd(t *testing.T) {
	t.Parallel()
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	for _, p := range []string{"client ping", "", strings.Repeat("p", 121)} {
		c.Send(true, frame.OpPing, []byte(p))
		if f := u.Next(); f.Opcode != frame.OpPing || !f.Masked || string(f.Payload) != p {
			t.Fatalf("upstream got %v, want the client's ping %q", f, p)
		}
		u.Send(true, frame.OpPong, []byte(p))
		if f := c.Next(); f.Opcode != frame.OpPong || f.Masked || string(f.Payload) != p {
			t.Fatalf("client got %v, want the upstream's pong %q", f, p)
		}
		u.Send(true, frame.OpPing, []byte("srv "+p))
		if f := c.Next(); f.Opcode != frame.OpPing || string(f.Payload) != "srv "+p {
			t.Fatalf("client got %v, want the upstream's ping", f)
		}
		c.Send(true, frame.OpPong, []byte("srv "+p))
		if f := u.Next(); f.Opcode != frame.OpPong || string(f.Payload) != "srv "+p {
			t.Fatalf("upstream got %v, want the client's pong", f)
		}
	}
	c.SendClose(1000, "")
	u.ExpectClose(1000, "")
	u.SendClose(1000, "")
	u.Conn.Close()
	c.ExpectClose(1000, "")
	expectLog(t, gw, "reason", "normal", "c2u_frames", "7", "u2c_frames", "7")
}

// write_timeout: a client that stops reading while the upstream floods is
// gone within about write_timeout (the upstream gets 1001), and nothing is
// buffered meanwhile; likewise an upstream that stops reading while the
// client floods (the client gets upstream_failure_code).
func TestRelayWriteTimeout(t *testing.T) {
	for _, stuck := range []string{"client", "upstream"} {
		t.Run("stuck-"+stuck, func(t *testing.T) {
			up, ups := rawUpstreamChan(t)
			gw := startGateway(t, relayYAML(up.URL, "write_timeout", "300ms", "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"))
			c := wstest.DialRaw(t, gw.Addr, "/")
			u := recvPeer(t, ups)
			flooder, reader := u, c
			wantCode, wantReason := 1001, "client gone"
			if stuck == "upstream" {
				flooder, reader = c, u
				wantCode, wantReason = 1014, "upstream gone"
			}
			defer reader.Conn.Close() // keeps it reachable: a collected conn is closed
			heap := startHeapSampler()
			start := time.Now()
			var stop atomic.Bool
			var sent, lastWrite atomic.Int64
			floodDone := make(chan struct{})
			go func() {
				defer close(floodDone)
				p := make([]byte, 256<<10)
				for !stop.Load() {
					if flooder.WriteErr(frame.AppendFrame(nil, flooder.Header(true, frame.OpBinary), p)) != nil {
						return
					}
					sent.Add(1)
					lastWrite.Store(time.Now().UnixNano())
				}
			}()
			// The flooder reads the gateway's Close while it floods.
			code, reason, _ := flooder.ReadClose()
			el := time.Since(start)
			// From the moment every buffer on the way was full (the
			// flooder's last write went through) to the Close: at most
			// write_timeout, plus scheduling.
			stalled := time.Duration(time.Now().UnixNano() - lastWrite.Load())
			stop.Store(true)
			<-floodDone
			grow := heap.growth()
			t.Logf("stuck %s found after %v, %v after the flood stalled (write_timeout 300ms); %d MiB flooded; heap grew %.1f MiB",
				stuck, el.Round(time.Millisecond), stalled.Round(time.Millisecond), sent.Load()/4, float64(grow)/(1<<20))
			if code != wantCode || reason != wantReason {
				t.Errorf("%s got Close(%d, %q), want Close(%d, %q)", flooder.Role(), code, reason, wantCode, wantReason)
			}
			if el > 3*time.Second || stalled > 800*time.Millisecond {
				t.Errorf("stuck %s found after %v, %v after the flood stalled; want about write_timeout (300ms) after",
					stuck, el, stalled)
			}
			if grow >= heapLimit {
				t.Errorf("heap grew by %d bytes during the flood, want < %d", grow, heapLimit)
			}
			expectLog(t, gw, "reason", stuck+"_gone", "closed_by", stuck, stuck+"_close_code", "none",
				flooder.Role()+"_close_code", itoa(wantCode))
		})
	}
}

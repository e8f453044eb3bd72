package proxy

// End-to-end tests of the per-session and per-address relay limits (docs/
// `rate_limit`: messages, messages_per_ip, bytes, frames; on_exceed close and
// throttle; "The relay": timers suspended while throttled; issue 7).

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/internal/wstest"
)

const rateReason = "client over rate limit"

// limitViolation runs bad on a session (after one echoed "hello": one
// message, one frame, five bytes) and checks the rate-limit row of the close
// table: 1008 to the client, intact, 1001 upstream, the access log and the
// metric of kind.
func limitViolation(t *testing.T, cfg []string, bad func(c *wstest.Peer), kind string) {
	t.Helper()
	up := newGorillaUpstream(t, nil)
	gw := startGateway(t, relayYAML(up.URL, cfg...))
	c := wstest.DialRaw(t, gw.Addr, "/")
	c.EchoCheck("hello")
	bad(c)
	c.ExpectClose(1008, rateReason)
	up.expectClose(t, 1001, rateReason)
	c.SendClose(1008, "")
	c.ExpectEOF(2 * time.Second)
	expectLog(t, gw, "reason", "rate_limited", "closed_by", "gateway",
		"client_close_code", "1008", "client_close_reason", rateReason,
		"upstream_close_code", "1001", "upstream_close_reason", rateReason)
	if n := rateHits(gw.Gateway, "relay", kind); n != 1 {
		t.Errorf("wsgate_rate_limited_total{kind=%s} = %v, want 1", kind, n)
	}
}

// TestLimitSessionClose: each per-session limit with on_exceed: close.
func TestLimitSessionClose(t *testing.T) {
	t.Parallel()
	text := func(c *wstest.Peer, n int) {
		for i := range n {
			c.Send(true, frame.OpText, []byte(fmt.Sprint("m", i)))
		}
	}
	cases := []struct {
		name string
		cfg  []string
		bad  func(c *wstest.Peer)
		kind string
	}{
		{"messages", []string{"rate_limit", "{messages: {rate: 1/m, burst: 3}}"},
			func(c *wstest.Peer) { text(c, 3) }, kindMessages},
		// A message is counted once, at its first frame: a fragmented
		// message costs one token however many frames it has.
		{"messages-fragmented", []string{"rate_limit", "{messages: {rate: 1/m, burst: 2}}"},
			func(c *wstest.Peer) {
				c.Send(false, frame.OpText, []byte("a"))
				c.Send(false, frame.OpContinuation, []byte("b"))
				c.Send(true, frame.OpContinuation, []byte("c"))
				text(c, 1)
			}, kindMessages},
		{"bytes", []string{"max_frame_bytes", "1KiB", "max_message_bytes", "4KiB",
			"rate_limit", "{bytes: {rate: 1KiB/m, burst: 2KiB}}"},
			func(c *wstest.Peer) {
				c.Send(true, frame.OpBinary, make([]byte, 1024))
				c.Send(true, frame.OpBinary, make([]byte, 1024)) // 5 + 2048 > 2 KiB
			}, kindBytes},
		{"frames-pings", []string{"rate_limit", "{frames: {rate: 1/m, burst: 5}}"},
			func(c *wstest.Peer) {
				for range 5 {
					c.Send(true, frame.OpPing, nil)
				}
			}, kindFrames},
		{"frames-empty-continuations", []string{"rate_limit", "{frames: {rate: 1/m, burst: 5}}"},
			func(c *wstest.Peer) {
				c.Send(false, frame.OpText, []byte("a"))
				for range 4 {
					c.Send(false, frame.OpContinuation, nil)
				}
			}, kindFrames},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			limitViolation(t, tc.cfg, tc.bad, tc.kind)
		})
	}
}

// TestLimitMessagesPerIP: messages_per_ip is summed over every session of
// one client address, so more sessions buy no more messages; another
// address has its own budget.
func TestLimitMessagesPerIP(t *testing.T) {
	t.Parallel()
	up := newGorillaUpstream(t, nil)
	gw := startGateway(t, limitYAML(up.URL, "{messages_per_ip: {rate: 1/m, burst: 4}}"))
	a := wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil).Peer
	b := wstest.MustHandshake(t, gw.Addr, "127.0.0.2", nil).Peer
	other := wstest.MustHandshake(t, gw.Addr, "127.0.0.3", nil).Peer
	a.EchoCheck("a1")
	a.EchoCheck("a2")
	b.EchoCheck("b1")
	b.EchoCheck("b2")
	for i := range 4 {
		other.EchoCheck(fmt.Sprint("o", i))
	}
	b.Send(true, frame.OpText, []byte("b3"))
	b.ExpectClose(1008, rateReason)
	b.SendClose(1008, "")
	a.Send(true, frame.OpText, []byte("a3"))
	a.ExpectClose(1008, rateReason)
	a.SendClose(1008, "")
	if n := rateHits(gw.Gateway, "relay", kindMessagesPerIP); n != 2 {
		t.Errorf("wsgate_rate_limited_total{kind=messages_per_ip} = %v, want 2", n)
	}
	other.SendClose(1000, "")
	other.ExpectClose(1000, "reply:") // gorilla's reply
}

// TestFloodEmptyFramesClose: a client flooding empty pings or empty
// continuations beyond frames.rate, without reading, is closed with 1008,
// and the Close frame reaches it intact (lingering close): one that answers
// gets a FIN, one that floods on is cut off after close_timeout.
func TestFloodEmptyFramesClose(t *testing.T) {
	t.Parallel()
	key := frame.NewKey()
	ping := frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpPing, Masked: true, Key: key}, nil)
	cont := frame.AppendFrame(nil, frame.Header{Opcode: frame.OpContinuation, Masked: true, Key: key}, nil)
	start := frame.AppendFrame(nil, frame.Header{Opcode: frame.OpText, Masked: true, Key: key}, []byte("x"))
	for _, tc := range []struct {
		name         string
		first, flood []byte
		answers      bool
	}{
		{"pings-answers", nil, ping, true},
		{"pings-never-stops", nil, ping, false},
		{"continuations-answers", start, cont, true},
		{"continuations-never-stops", start, cont, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newGorillaUpstream(t, nil)
			closeTimeout := "500ms"
			if tc.answers {
				closeTimeout = "3s" // time enough to read its answer, even under -race
			}
			gw := startGateway(t, limitYAML(up.URL, "{frames: {rate: 200/s, burst: 100}}", "close_timeout", closeTimeout))
			c := wstest.DialRaw(t, gw.Addr, "/")
			c.EchoCheck("hello")
			// Many frames per write: a flood, as fast as the socket takes it.
			batch := bytes.Repeat(tc.flood, 512)
			var stop atomic.Bool
			var sent atomic.Int64
			flooding := make(chan struct{})
			go func() {
				defer close(flooding)
				if tc.first != nil && c.WriteErr(tc.first) != nil {
					return
				}
				// One that answers floods a bounded amount: its Close can
				// only be read after everything it sent before it.
				limit := int64(1 << 62)
				if tc.answers {
					limit = 20_000
				}
				deadline := time.Now().Add(relayIO)
				for !stop.Load() && time.Now().Before(deadline) && sent.Load() < limit {
					if c.WriteErr(batch) != nil {
						return
					}
					sent.Add(512)
				}
			}()
			time.Sleep(200 * time.Millisecond) // flood before reading anything
			code, reason, _ := c.ReadClose()   // pongs (from the upstream) come first
			got := time.Now()
			if tc.answers {
				stop.Store(true)
				<-flooding
			}
			if code != 1008 || reason != rateReason {
				t.Errorf("client got Close(%d, %q), want Close(1008, %q)", code, reason, rateReason)
			}
			up.expectClose(t, 1001, rateReason)
			if tc.answers {
				c.SendClose(1008, "")
				c.ExpectEOF(3 * time.Second)
			} else {
				<-flooding
				if el := time.Since(got); el > 2*time.Second {
					t.Errorf("the flood went on for %v after the Close, want about close_timeout (500ms)", el)
				}
			}
			if n := sent.Load(); n < 200 {
				t.Errorf("the client sent only %d frames", n)
			}
			expectLog(t, gw, "reason", "rate_limited", "client_close_code", "1008", "upstream_close_code", "1001")
		})
	}
}

// TestFloodPingsThrottle: with on_exceed: throttle a ping flood is slowed to
// frames.rate, every ping still arrives, and the session lives on.
func TestFloodPingsThrottle(t *testing.T) {
	t.Parallel()
	up := newGorillaUpstream(t, nil) // answers every ping
	gw := startGateway(t, limitYAML(up.URL, "{frames: {rate: 100/s, burst: 10}, on_exceed: throttle}"))
	c := wstest.DialRaw(t, gw.Addr, "/")
	const n = 110
	start := time.Now()
	go func() {
		for i := range n {
			if c.WriteErr(frame.AppendFrame(nil, c.Header(true, frame.OpPing), []byte(fmt.Sprint(i)))) != nil {
				return
			}
		}
	}()
	for i := range n {
		f := c.Next()
		if f.Opcode != frame.OpPong || string(f.Payload) != fmt.Sprint(i) {
			t.Fatalf("frame %d: %v, want the pong %d", i, f, i)
		}
	}
	// 10 at once, then 100 at 100/s.
	if el := time.Since(start); el < 800*time.Millisecond || el > 3*time.Second {
		t.Errorf("%d pings took %v, want about 1s", n, el)
	}
	c.EchoCheck("still here")
	if rateHits(gw.Gateway, "relay", kindFrames) < 1 {
		t.Error("throttling not counted in wsgate_rate_limited_total")
	}
	c.SendClose(1000, "")
	c.ExpectClose(1000, "reply:")
}

// TestThrottleBytes is the throttle acceptance test: a client sending at ten
// times bytes.rate for T = 6s gets burst + rate·T bytes through (±20%), the
// gateway's heap stays flat (nothing is buffered: the client is simply not
// read), and neither the pong timer nor the idle timer kills the session,
// although each throttle wait (250ms) is longer than idle_timeout (200ms)
// and than ping_interval (100ms). A shutdown during a wait ends it at
// once. Not parallel: it measures the heap and the timing.
func TestThrottleBytes(t *testing.T) {
	const (
		frameSize = 2 << 10
		rateBps   = 8 << 10
		burst     = 16 << 10
		T         = 6 * time.Second
	)
	var got atomic.Int64
	var upClosed atomic.Value
	up := newRawUpstream(t, func(p *wstest.Peer) {
		for {
			f, err := p.Read()
			if err != nil {
				upClosed.Store("error: " + err.Error())
				return
			}
			switch f.Opcode {
			case frame.OpPing:
				_ = p.WriteErr(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpPong}, f.Payload))
			case frame.OpClose:
				upClosed.Store(fmt.Sprintf("close %x", f.Payload))
				_ = p.WriteErr(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpClose}, f.Payload))
				return
			case frame.OpBinary:
				got.Add(int64(len(f.Payload)))
			}
		}
	})
	gw := startGateway(t, limitYAML(up.URL,
		fmt.Sprintf("{bytes: {rate: %d/s, burst: %d}, on_exceed: throttle}", rateBps, burst),
		"max_frame_bytes", "2KiB", "max_message_bytes", "2KiB",
		"idle_timeout", "200ms", "ping_interval", "100ms", "pong_timeout", "1s"))
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	c := wstest.DialRaw(t, gw.Addr, "/")

	var clientClose atomic.Value
	closed := make(chan struct{})
	start := time.Now()
	go func() { // the client's reader: answers keepalive pings
		defer close(closed)
		for {
			f, err := c.Read()
			if isTimeout(err) && time.Since(start) < 3*T {
				continue // the gateway has nothing to say while it throttles
			}
			if err != nil {
				clientClose.Store("error: " + err.Error())
				return
			}
			switch f.Opcode {
			case frame.OpPing:
				_ = c.WriteErr(frame.AppendFrame(nil, c.Header(true, frame.OpPong), f.Payload))
			case frame.OpClose:
				clientClose.Store(fmt.Sprintf("%d", int(f.Payload[0])<<8|int(f.Payload[1])))
				return
			}
		}
	}()

	payload := make([]byte, frameSize)
	out := make([]byte, 0, frameSize+frame.MaxHeaderSize)
	var stop atomic.Bool
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	start = time.Now()
	go func() { // ten times the rate, paced by elapsed time (a ticker drops ticks on a loaded machine)
		defer wg.Done()
		for !stop.Load() {
			owed := int64(time.Since(start).Seconds()*10*rateBps) + frameSize
			for sent.Load() < owed && !stop.Load() {
				out = frame.AppendFrame(out[:0], c.Header(true, frame.OpBinary), payload)
				if c.WriteErr(out) != nil {
					return
				}
				sent.Add(frameSize)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(T - time.Since(start))
	delivered := got.Load()
	runtime.GC()
	runtime.ReadMemStats(&m1)

	want := float64(burst) + float64(rateBps)*T.Seconds()
	t.Logf("sent %d KiB in %v, delivered %d KiB, want %.0f KiB (burst + rate·T); heap %+.2f MiB",
		sent.Load()>>10, T, delivered>>10, want/1024, float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/(1<<20))
	if s := float64(sent.Load()); s < 8*float64(rateBps)*T.Seconds() {
		t.Errorf("the client sent only %.0f KiB: not 10x the rate", s/1024)
	}
	if d := float64(delivered); d < 0.8*want || d > 1.2*want {
		t.Errorf("delivered %d bytes, want %.0f ±20%%", delivered, want)
	}
	if grown := int64(m1.HeapAlloc) - int64(m0.HeapAlloc); grown > 4<<20 {
		t.Errorf("heap grew by %d bytes while throttling", grown)
	}
	if v := clientClose.Load(); v != nil {
		t.Fatalf("the client's session ended while throttled: %v", v)
	}
	if v := upClosed.Load(); v != nil {
		t.Fatalf("the upstream's session ended while throttled: %v", v)
	}
	if n := len(gw.Logs.Lines(`"event":"session"`)); n != 0 {
		t.Fatalf("session closed while throttled: %s", gw.Logs.String())
	}

	// Shutdown while the pump is waiting for tokens: the wait is cut short,
	// the client gets its Close at once.
	t0 := time.Now()
	go gw.stop()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("no Close within 2s of shutdown: the throttle wait was not woken")
	}
	stop.Store(true)
	wg.Wait()
	if v := clientClose.Load(); v != "1001" {
		t.Errorf("client got %v at shutdown, want Close 1001", v)
	}
	t.Logf("shutdown reached the throttled client in %v", time.Since(t0).Round(time.Millisecond))
	c.SendClose(1001, "")
	expectLog(t, gw, "reason", "shutdown", "client_close_code", "1001")
}

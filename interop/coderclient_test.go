package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	coder "github.com/coder/websocket"

	"wsgate/frame"
)

// coderClient is coder/websocket's client on our server, with a goroutine
// reading messages into a channel: coder handles control frames only
// inside a Read, and its Ping waits for a Read to see the pong.
type coderClient struct {
	c    *coder.Conn
	ctx  context.Context
	msgs chan coderMsg

	mu    sync.Mutex
	pings []string // pings coder received (and answered)
	pongs []string // pongs coder received
}

type coderMsg struct {
	typ coder.MessageType
	p   []byte
	err error
}

func dialCoder(t *testing.T, url string) *coderClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*ioTimeout)
	t.Cleanup(cancel)
	cc := &coderClient{ctx: ctx, msgs: make(chan coderMsg, 64)}
	c, resp, err := coder.Dial(ctx, url, &coder.DialOptions{
		OnPingReceived: func(_ context.Context, p []byte) bool {
			cc.mu.Lock()
			cc.pings = append(cc.pings, string(p))
			cc.mu.Unlock()
			return true // and answer it
		},
		OnPongReceived: func(_ context.Context, p []byte) {
			cc.mu.Lock()
			cc.pongs = append(cc.pongs, string(p))
			cc.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("coder Dial: %v", err)
	}
	if resp.Body != nil {
		_ = resp.Body.Close()
	}
	cc.c = c
	c.SetReadLimit(maxPayload) // coder's default is 32 KiB
	t.Cleanup(func() { _ = c.CloseNow() })
	go func() {
		for {
			typ, p, err := c.Read(ctx)
			cc.msgs <- coderMsg{typ, p, err}
			if err != nil {
				return
			}
		}
	}()
	return cc
}

func coderType(op frame.Opcode) coder.MessageType {
	if op == frame.OpText {
		return coder.MessageText
	}
	return coder.MessageBinary
}

func (cc *coderClient) read(t *testing.T) coderMsg {
	t.Helper()
	select {
	case m := <-cc.msgs:
		return m
	case <-cc.ctx.Done():
		t.Fatal("coder read nothing")
		return coderMsg{}
	}
}

func (cc *coderClient) expect(t *testing.T, typ coder.MessageType, p []byte) {
	t.Helper()
	m := cc.read(t)
	if m.err != nil || m.typ != typ || !bytes.Equal(m.p, p) {
		t.Fatalf("coder read %v, %d bytes, %v; want %v, the %d bytes sent", m.typ, len(m.p), m.err, typ, len(p))
	}
}

// ping has coder ping our server and returns the payload it chose; Ping
// returns only once a pong with that payload was read (§5.5.3).
func (cc *coderClient) ping(t *testing.T) string {
	t.Helper()
	if err := cc.c.Ping(cc.ctx); err != nil {
		t.Fatalf("coder Ping: %v", err)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.pongs[len(cc.pongs)-1]
}

// expectClose checks coder reports the Close it read as a CloseError with
// code and reason, through CloseStatus and errors.As.
func (cc *coderClient) expectClose(t *testing.T, code coder.StatusCode, reason string) {
	t.Helper()
	m := cc.read(t)
	var ce coder.CloseError
	if coder.CloseStatus(m.err) != code || !errors.As(m.err, &ce) || ce.Reason != reason {
		t.Fatalf("coder read %v, want a CloseError %d %q", m.err, code, reason)
	}
}

// close has coder start the closing handshake. coder's Close reads the
// answer itself unless a Read is in progress; a Ping first makes sure the
// reading goroutine is inside Read, so the answer, reason included,
// reaches it. It returns the ping's payload.
func (cc *coderClient) close(t *testing.T, code coder.StatusCode, reason string) string {
	t.Helper()
	ping := cc.ping(t)
	// Close itself fails unless the answer carries the same code.
	if err := cc.c.Close(code, reason); err != nil {
		t.Fatalf("coder Close: %v", err)
	}
	cc.expectClose(t, code, reason)
	return ping
}

func (cc *coderClient) recorded() (pings, pongs []string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return append([]string(nil), cc.pings...), append([]string(nil), cc.pongs...)
}

// TestCoderClient_OurServer_Messages_RFC6455_5_2: coder's client sends
// each message as one masked frame (§5.3), so every length encoding of
// §5.2 reaches our server exactly: 7-bit up to 125, 16-bit from 126 to
// 65535, 64-bit from 65536, and 1 MiB. Our server echoes each as one
// unmasked frame.
func TestCoderClient_OurServer_Messages_RFC6455_5_2(t *testing.T) {
	t.Parallel()
	srv := startOurServer(t)
	cc := dialCoder(t, srv.url)
	var want []string
	for _, n := range sizes {
		for _, op := range []frame.Opcode{frame.OpText, frame.OpBinary} {
			p := payload(op, n)
			if err := cc.c.Write(cc.ctx, coderType(op), p); err != nil {
				t.Fatalf("coder Write(%d bytes): %v", n, err)
			}
			cc.expect(t, coderType(op), p)
			want = append(want, framesOf(op, n)...)
		}
	}
	ping := cc.close(t, coder.StatusNormalClosure, "bye")

	got, sent := srv.next(t).wait(t)
	sameLines(t, "frames our server read", got, append(want, ctl(frame.OpPing, ping), closeLine(1000, "bye")))
	sameLines(t, "frames our server wrote", sent, append(want, ctl(frame.OpPong, ping), closeLine(1000, "bye")))
}

// TestCoderClient_OurServer_Fragmented_RFC6455_5_4: coder's message writer
// sends one frame per Write, empty ones included, and an empty final
// frame on Close, so it can send our fragment plans; its Ping goes out
// between fragments. Our server answers the ping at once, echoes the
// fragments as they came with its own ping in the same place, and coder
// reassembles the echo and answers that ping.
func TestCoderClient_OurServer_Fragmented_RFC6455_5_4(t *testing.T) {
	t.Parallel()
	srv := startOurServer(t)
	cc := dialCoder(t, srv.url)
	var wantGot, wantSent, echoPings []string
	for _, plan := range fragmentPlans {
		// coder ends every message with an empty FIN frame written by
		// Close, so a plan whose last fragment is not empty gets one more.
		total, lens := 0, plan.lens
		for _, n := range lens {
			total += n
		}
		if lens[len(lens)-1] != 0 {
			lens = append(lens[:len(lens):len(lens)], 0)
		}
		p := payload(plan.op, total)
		w, err := cc.c.Writer(cc.ctx, coderType(plan.op))
		if err != nil {
			t.Fatal(err)
		}
		// Our server reads the fragments and coder's pings in order and
		// answers each ping at once; the echo waits for the last fragment
		// and carries our own pings where coder's were; coder answers
		// those while reading the echo.
		frames := framesOf(plan.op, lens...)
		var got, pongs, echo, echoPongs []string
		off := 0
		for i, n := range lens[:len(lens)-1] {
			if _, err := w.Write(p[off : off+n]); err != nil {
				t.Fatalf("%s: coder Write: %v", plan.name, err)
			}
			off += n
			got, echo = append(got, frames[i]), append(echo, frames[i])
			if _, ok := plan.pings[i]; ok {
				ping := cc.ping(t) // coder chooses the payload
				got = append(got, ctl(frame.OpPing, ping))
				pongs = append(pongs, ctl(frame.OpPong, ping))
				echo = append(echo, ctl(frame.OpPing, "echo:"+ping))
				echoPongs = append(echoPongs, ctl(frame.OpPong, "echo:"+ping))
				echoPings = append(echoPings, "echo:"+ping)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatalf("%s: coder Close of the message: %v", plan.name, err)
		}
		got, echo = append(got, frames[len(frames)-1]), append(echo, frames[len(frames)-1])
		cc.expect(t, coderType(plan.op), p)
		wantGot = append(append(wantGot, got...), echoPongs...)
		wantSent = append(append(wantSent, pongs...), echo...)
	}
	if pings, _ := cc.recorded(); strings.Join(pings, "|") != strings.Join(echoPings, "|") {
		t.Errorf("coder got pings %q, want %q", pings, echoPings)
	}
	ping := cc.close(t, 4000, "done")

	got, sent := srv.next(t).wait(t)
	sameLines(t, "frames our server read", got, append(wantGot, ctl(frame.OpPing, ping), closeLine(4000, "done")))
	sameLines(t, "frames our server wrote", sent, append(wantSent, ctl(frame.OpPong, ping), closeLine(4000, "done")))
}

// TestCoderClient_OurServer_PingPong_RFC6455_5_5_2: coder's pings get our
// pongs with the same payload (its Ping matches them, §5.5.3), and our
// pings (empty, short, 125 bytes) get coder's pongs with theirs.
func TestCoderClient_OurServer_PingPong_RFC6455_5_5_2(t *testing.T) {
	t.Parallel()
	srv := startOurServer(t)
	cc := dialCoder(t, srv.url)
	var wantGot, wantSent []string
	for range 3 {
		p := cc.ping(t)
		wantGot = append(wantGot, ctl(frame.OpPing, p))
		wantSent = append(wantSent, ctl(frame.OpPong, p))
	}
	ours := []string{"", "ping", strings.Repeat("€", 41) + "xx"}
	for _, p := range ours {
		cmd := []byte("cmd:ping:" + p)
		if err := cc.c.Write(cc.ctx, coder.MessageText, cmd); err != nil {
			t.Fatal(err)
		}
		cc.expect(t, coder.MessageText, cmd)
		wantGot = append(wantGot, framesOf(frame.OpText, len(cmd))[0], ctl(frame.OpPong, p))
		wantSent = append(wantSent, ctl(frame.OpPing, p), framesOf(frame.OpText, len(cmd))[0])
	}
	if pings, _ := cc.recorded(); strings.Join(pings, "|") != strings.Join(ours, "|") {
		t.Errorf("coder got pings %q, want %q", pings, ours)
	}
	ping := cc.close(t, 1000, "bye")

	got, sent := srv.next(t).wait(t)
	sameLines(t, "frames our server read", got, append(wantGot, ctl(frame.OpPing, ping), closeLine(1000, "bye")))
	sameLines(t, "frames our server wrote", sent, append(wantSent, ctl(frame.OpPong, ping), closeLine(1000, "bye")))
}

// TestCoderClient_OurServer_Close_RFC6455_7_1_2: the closing handshake
// started by either side carries code and reason both ways (§5.5.1,
// §7.1.2): coder sees them as a CloseError (CloseStatus and errors.As),
// and its own Close fails unless our answer has the same code; our server
// sees them in the Close it reads. An empty Close reads as 1005 on both
// sides (§7.1.5).
func TestCoderClient_OurServer_Close_RFC6455_7_1_2(t *testing.T) {
	t.Parallel()
	srv := startOurServer(t)
	for _, c := range closeCases {
		code, reason := c.code, c.reason
		t.Run("coder closes "+closeName(code, reason), func(t *testing.T) {
			cc := dialCoder(t, srv.url)
			ping := cc.close(t, coder.StatusCode(code), reason)
			got, sent := srv.next(t).wait(t)
			sameLines(t, "frames our server read", got, []string{ctl(frame.OpPing, ping), closeLine(code, reason)})
			sameLines(t, "frames our server wrote", sent, []string{ctl(frame.OpPong, ping), closeLine(code, reason)})
		})
		t.Run("our server closes "+closeName(code, reason), func(t *testing.T) {
			cc := dialCoder(t, srv.url)
			cmd := fmt.Sprintf("cmd:close:%d:%s", code, reason)
			if err := cc.c.Write(cc.ctx, coder.MessageText, []byte(cmd)); err != nil {
				t.Fatal(err)
			}
			// coder answers a Close with the same code and reason.
			cc.expectClose(t, coder.StatusCode(code), reason)
			got, sent := srv.next(t).wait(t)
			sameLines(t, "frames our server read", got, []string{framesOf(frame.OpText, len(cmd))[0], closeLine(code, reason)})
			sameLines(t, "frames our server wrote", sent, []string{closeLine(code, reason)})
		})
	}
}

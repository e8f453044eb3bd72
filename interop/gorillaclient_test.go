package interop

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wsgate/frame"
)

// gorilla's client sends each message in frames of at most its write
// buffer size (4096 unless set), flushing one as the next byte needs room.
const gorillaDefaultBuffer = 4096

// dialGorilla connects gorilla's client to our server. Its close handler
// answers a Close with the same code and reason: gorilla's default answer
// drops the reason, and the test wants to see it come back.
func dialGorilla(t *testing.T, d *websocket.Dialer, url string) (*websocket.Conn, *[]string) {
	t.Helper()
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("gorilla Dial: %v", err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = c.Close() })
	c.SetCloseHandler(func(code int, text string) error {
		err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(ioTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil // we started the handshake; this Close is the answer
		}
		return err
	})
	// Record the pongs our server sends; the handler runs inside
	// ReadMessage, on the test goroutine.
	pongs := new([]string)
	c.SetPongHandler(func(p string) error {
		*pongs = append(*pongs, p)
		return nil
	})
	return c, pongs
}

func gorillaType(op frame.Opcode) int {
	if op == frame.OpText {
		return websocket.TextMessage
	}
	return websocket.BinaryMessage
}

// gorillaEcho sends p as one message and expects it back.
func gorillaEcho(t *testing.T, c *websocket.Conn, typ int, p []byte) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if err := c.WriteMessage(typ, p); err != nil {
		t.Fatalf("gorilla WriteMessage(%d bytes): %v", len(p), err)
	}
	gorillaExpect(t, c, typ, p)
}

func gorillaExpect(t *testing.T, c *websocket.Conn, typ int, p []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	gt, got, err := c.ReadMessage()
	if err != nil || gt != typ || !bytes.Equal(got, p) {
		t.Fatalf("gorilla read type %d, %d bytes, %v; want type %d, the %d bytes sent", gt, len(got), err, typ, len(p))
	}
}

// gorillaCloseError reads until the Close and checks gorilla reports it as
// a *websocket.CloseError with code and reason.
func gorillaCloseError(t *testing.T, c *websocket.Conn, code int, reason string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != code || ce.Text != reason {
		t.Fatalf("gorilla read %v, want *websocket.CloseError %d %q", err, code, reason)
	}
}

// gorillaClose has gorilla start the closing handshake and checks that our
// server echoes code and reason (RFC 6455 §5.5.1, §7.1.2).
func gorillaClose(t *testing.T, c *websocket.Conn, code int, reason string) {
	t.Helper()
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(ioTimeout)); err != nil {
		t.Fatalf("gorilla close: %v", err)
	}
	gorillaCloseError(t, c, code, reason)
}

// TestGorillaClient_OurServer_Messages_RFC6455_5_2: gorilla's client sends
// text and binary messages across the 7/16/64-bit length boundaries of
// §5.2 up to 1 MiB, masked (§5.3) and split at its 4096-byte buffer; our
// server unmasks, validates and echoes them unmasked, fragment for
// fragment, and gorilla reads them back intact.
func TestGorillaClient_OurServer_Messages_RFC6455_5_2(t *testing.T) {
	t.Parallel()
	srv := startOurServer(t)
	c, _ := dialGorilla(t, &websocket.Dialer{}, srv.url)
	var want []string
	for _, n := range sizes {
		for _, op := range []frame.Opcode{frame.OpText, frame.OpBinary} {
			gorillaEcho(t, c, gorillaType(op), payload(op, n))
			want = append(want, dataFrames(op, n, gorillaDefaultBuffer)...)
		}
	}
	gorillaClose(t, c, websocket.CloseNormalClosure, "bye")

	got, sent := srv.next(t).wait(t)
	want = append(want, closeLine(1000, "bye"))
	sameLines(t, "frames our server read", got, want)
	sameLines(t, "frames our server wrote", sent, want)
}

// TestGorillaClient_OurServer_Fragmented_RFC6455_5_4: with a 1001-byte
// write buffer gorilla sends messages in exactly 3 and 17 fragments (text
// cut inside code points), and a ping between the first two fragments;
// our server answers the ping at once, echoes the fragments as they came
// with its own ping in the same place, and gorilla reassembles the echo
// and answers that ping.
func TestGorillaClient_OurServer_Fragmented_RFC6455_5_4(t *testing.T) {
	t.Parallel()
	const buf = 1001
	srv := startOurServer(t)
	c, pongs := dialGorilla(t, &websocket.Dialer{WriteBufferSize: buf}, srv.url)
	var wantGot, wantSent []string
	for _, tc := range []struct {
		op    frame.Opcode
		frags int
		ping  bool
	}{
		{frame.OpText, 3, false},
		{frame.OpBinary, 3, false},
		{frame.OpText, 17, false},
		{frame.OpBinary, 17, false},
		{frame.OpText, 3, true},
		{frame.OpText, 17, true},
	} {
		p := payload(tc.op, tc.frags*buf)
		w, err := c.NextWriter(gorillaType(tc.op))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
		frames := dataFrames(tc.op, len(p), buf)
		if tc.ping {
			// Writing one byte more than the buffer holds flushes the
			// first fragment; the ping goes out before the second.
			_, err = w.Write(p[:buf+1])
			if err == nil {
				err = c.WriteControl(websocket.PingMessage, []byte("between"), time.Now().Add(ioTimeout))
			}
			if err == nil {
				_, err = w.Write(p[buf+1:])
			}
			rest := append([]string{frames[0]}, ctl(frame.OpPing, "between"))
			wantGot = append(wantGot, append(rest, frames[1:]...)...)
			wantGot = append(wantGot, ctl(frame.OpPong, "echo:between"))
			wantSent = append(wantSent, ctl(frame.OpPong, "between"), frames[0], ctl(frame.OpPing, "echo:between"))
			wantSent = append(wantSent, frames[1:]...)
		} else {
			_, err = w.Write(p)
			wantGot = append(wantGot, frames...)
			wantSent = append(wantSent, frames...)
		}
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			t.Fatalf("gorilla writing %d fragments: %v", tc.frags, err)
		}
		gorillaExpect(t, c, gorillaType(tc.op), p)
	}
	if strings.Join(*pongs, ",") != "between,between" {
		t.Errorf("gorilla got pongs %q, want two of %q", *pongs, "between")
	}
	gorillaClose(t, c, 4000, "done")

	got, sent := srv.next(t).wait(t)
	sameLines(t, "frames our server read", got, append(wantGot, closeLine(4000, "done")))
	sameLines(t, "frames our server wrote", sent, append(wantSent, closeLine(4000, "done")))
}

// TestGorillaClient_OurServer_PingPong_RFC6455_5_5_2: gorilla's pings
// (empty, short, the 125-byte maximum of §5.5) get our pongs with the same
// payload (§5.5.3), and our ping gets gorilla's pong.
func TestGorillaClient_OurServer_PingPong_RFC6455_5_5_2(t *testing.T) {
	t.Parallel()
	srv := startOurServer(t)
	c, pongs := dialGorilla(t, &websocket.Dialer{}, srv.url)
	pings := []string{"", "ping", strings.Repeat("€", 41) + "xx"} // 125 bytes
	var wantGot, wantSent []string
	for _, p := range pings {
		if err := c.WriteControl(websocket.PingMessage, []byte(p), time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		gorillaEcho(t, c, websocket.TextMessage, []byte("sync"))
		wantGot = append(wantGot, ctl(frame.OpPing, p), "text 4 fin")
		wantSent = append(wantSent, ctl(frame.OpPong, p), "text 4 fin")
	}
	if strings.Join(*pongs, "|") != strings.Join(pings, "|") {
		t.Errorf("gorilla got pongs %q, want %q", *pongs, pings)
	}

	// Our ping: gorilla's default ping handler answers it while reading.
	cmd := []byte("cmd:ping:" + strings.Repeat("p", 125))
	gorillaEcho(t, c, websocket.TextMessage, cmd)
	wantGot = append(wantGot, "text 134 fin", ctl(frame.OpPong, strings.Repeat("p", 125)))
	wantSent = append(wantSent, ctl(frame.OpPing, strings.Repeat("p", 125)), "text 134 fin")
	gorillaClose(t, c, 1000, "bye")

	got, sent := srv.next(t).wait(t)
	sameLines(t, "frames our server read", got, append(wantGot, closeLine(1000, "bye")))
	sameLines(t, "frames our server wrote", sent, append(wantSent, closeLine(1000, "bye")))
}

// TestGorillaClient_OurServer_Close_RFC6455_7_1_2: the closing handshake
// started by either side carries code and reason both ways (§5.5.1,
// §7.1.2): gorilla sees them as a *websocket.CloseError, our server in the
// Close it reads and echoes. An empty Close reads as 1005 on both sides
// (§7.1.5).
func TestGorillaClient_OurServer_Close_RFC6455_7_1_2(t *testing.T) {
	t.Parallel()
	srv := startOurServer(t)
	for _, cc := range closeCases {
		code, reason := cc.code, cc.reason
		t.Run("gorilla closes "+closeName(code, reason), func(t *testing.T) {
			c, _ := dialGorilla(t, &websocket.Dialer{}, srv.url)
			gorillaClose(t, c, int(code), reason)
			got, sent := srv.next(t).wait(t)
			sameLines(t, "frames our server read", got, []string{closeLine(code, reason)})
			sameLines(t, "frames our server wrote", sent, []string{closeLine(code, reason)})
		})
		t.Run("our server closes "+closeName(code, reason), func(t *testing.T) {
			c, _ := dialGorilla(t, &websocket.Dialer{}, srv.url)
			cmd := fmt.Sprintf("cmd:close:%d:%s", code, reason)
			if err := c.WriteMessage(websocket.TextMessage, []byte(cmd)); err != nil {
				t.Fatal(err)
			}
			gorillaCloseError(t, c, int(code), reason)
			got, sent := srv.next(t).wait(t)
			sameLines(t, "frames our server read", got, []string{framesOf(frame.OpText, len(cmd))[0], closeLine(code, reason)})
			sameLines(t, "frames our server wrote", sent, []string{closeLine(code, reason)})
		})
	}
}

// TestGorillaClient_OurServer_BadClose_RFC6455_7_4: gorilla's WriteControl
// sends any Close payload, so it can send ones a peer must not: our server
// fails them with the code frame.ParseClose implies (§7.4.1: 1005 is never
// on the wire, §5.5.1: a code takes two bytes, §8.1: the reason is UTF-8)
// and gorilla reads that code in a *websocket.CloseError.
func TestGorillaClient_OurServer_BadClose_RFC6455_7_4(t *testing.T) {
	t.Parallel()
	srv := startOurServer(t)
	for _, tc := range []struct {
		name    string
		payload []byte
		code    int
		err     error
	}{
		{"code 1005 on the wire", []byte{0x03, 0xed}, 1002, frame.ErrCloseCodeIllegal},
		{"code 999", []byte{0x03, 0xe7}, 1002, frame.ErrCloseCodeIllegal},
		{"one byte", []byte{0x03}, 1002, frame.ErrCloseOneByte},
		{"reason not UTF-8", []byte{0x03, 0xe8, 'o', 0xff}, 1007, frame.ErrCloseReasonUTF8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialGorilla(t, &websocket.Dialer{}, srv.url)
			if err := c.WriteControl(websocket.CloseMessage, tc.payload, time.Now().Add(ioTimeout)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
			_, _, err := c.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("gorilla read %v, want a *websocket.CloseError with %d", err, tc.code)
			}
			sc := srv.next(t)
			sc.wait(t)
			if !errors.Is(sc.err, tc.err) {
				t.Errorf("our server stopped with %v, want %v", sc.err, tc.err)
			}
		})
	}
}

package interop

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"wsgate/frame"
)

var theirServers = []struct {
	name  string
	start func(*testing.T) *theirServer
}{
	{"gorilla", startGorilla},
	{"coder", startCoder},
}

// forEachServer runs test against each third-party server, in parallel.
func forEachServer(t *testing.T, test func(t *testing.T, srv *theirServer)) {
	t.Parallel()
	for _, ts := range theirServers {
		t.Run(ts.name, func(t *testing.T) {
			t.Parallel()
			test(t, ts.start(t))
		})
	}
}

// echo sends p as one frame and expects it back.
func echo(t *testing.T, e *endpoint, op frame.Opcode, p []byte) {
	t.Helper()
	if err := e.writeFrame(true, op, p); err != nil {
		t.Fatalf("write %v %d bytes: %v", op, len(p), err)
	}
	expect(t, e, op, p)
}

func expect(t *testing.T, e *endpoint, op frame.Opcode, p []byte) message {
	t.Helper()
	m, err := e.readMessage()
	if err != nil || m.op != op || !bytes.Equal(m.data, p) {
		t.Fatalf("read %v, %d bytes in %d frames, %v; want %v, the %d bytes sent", m.op, len(m.data), len(m.frames), err, op, len(p))
	}
	return m
}

// ourClose has our client start the closing handshake (RFC 6455 §7.1.2),
// checks the answer carries the same code and reason, and waits for the
// server to close the TCP connection (§7.1.1).
func ourClose(t *testing.T, e *endpoint, code frame.CloseCode, reason string) {
	t.Helper()
	got, err := e.closeHandshake(code, reason)
	if err != nil || got.code != code || got.reason != reason {
		t.Fatalf("closing handshake: answer %v, %v; want close %d %q", got, err, code, reason)
	}
	if err := e.awaitEOF(); err != nil {
		t.Fatalf("after the closing handshake: %v", err)
	}
}

// TestOurClient_TheirServer_Messages_RFC6455_5_2_5_3: our client sends
// text and binary messages across the 7/16/64-bit length boundaries of
// §5.2 up to 1 MiB, each frame masked with a fresh frame.NewKey (§5.3; both
// servers fail unmasked frames), and reads the echo: first as single
// frames of exactly those lengths, then fragmented by the server's own
// message writer.
func TestOurClient_TheirServer_Messages_RFC6455_5_2_5_3(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv *theirServer) {
		for _, split := range []int{0, 9001} {
			e := srv.dial(t, split)
			for _, n := range sizes {
				if split > 0 && n > 1<<16 {
					continue // the 1 MiB single-frame round is enough for the race budget
				}
				for _, op := range []frame.Opcode{frame.OpText, frame.OpBinary} {
					p := payload(op, n)
					if err := e.writeFrame(true, op, p); err != nil {
						t.Fatal(err)
					}
					m := expect(t, e, op, p)
					switch {
					case split == 0 && len(m.frames) != 1:
						t.Errorf("split=0: %v %d bytes came back in %d frames, want 1", op, n, len(m.frames))
					case split > 0 && len(m.frames) < (n+split-1)/split:
						t.Errorf("split=%d: %v %d bytes came back in %d frames", split, op, n, len(m.frames))
					}
				}
			}
			ourClose(t, e, 1000, "bye")
			srv.expectEvents(t, closeLine(1000, "bye"))
			if err := e.freshKeys(); err != nil {
				t.Error(err)
			}
		}
	})
}

// TestOurClient_TheirServer_Fragmented_RFC6455_5_4: our client sends
// messages in 3 and 17 fragments, empty ones included, text cut inside
// code points, with pings between fragments (§5.4: control frames may be
// injected in the middle of a fragmented message). The server answers
// each ping with a pong carrying its payload (§5.5.3) and echoes the
// reassembled message.
func TestOurClient_TheirServer_Fragmented_RFC6455_5_4(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv *theirServer) {
		e := srv.dial(t, 0)
		var events []string
		for _, plan := range fragmentPlans {
			before := len(e.pongs)
			p, pings, err := e.send(plan)
			if err != nil {
				t.Fatalf("%s: %v", plan.name, err)
			}
			expect(t, e, plan.op, p)
			if got := e.pongs[before:]; strings.Join(got, "|") != strings.Join(pings, "|") {
				t.Errorf("%s: pongs %q, want %q", plan.name, got, pings)
			}
			for _, ping := range pings {
				events = append(events, ctl(frame.OpPing, ping))
			}
		}
		ourClose(t, e, 4000, "done")
		srv.expectEvents(t, append(events, closeLine(4000, "done"))...)
		if err := e.freshKeys(); err != nil {
			t.Error(err)
		}
	})
}

// TestOurClient_TheirServer_PingPong_RFC6455_5_5_2: our pings (empty,
// short, the 125-byte maximum of §5.5) get the server's pongs with the
// same payload (§5.5.3), and the server's ping gets ours: gorilla reports
// the pong's payload, coder's Ping returns only on a matching one.
func TestOurClient_TheirServer_PingPong_RFC6455_5_5_2(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv *theirServer) {
		e := srv.dial(t, 0)
		pings := []string{"", "ping", strings.Repeat("€", 41) + "xx"}
		var events []string
		for _, p := range pings {
			if err := e.writeFrame(true, frame.OpPing, []byte(p)); err != nil {
				t.Fatal(err)
			}
			echo(t, e, frame.OpText, []byte("sync"))
			events = append(events, ctl(frame.OpPing, p))
		}
		if strings.Join(e.pongs, "|") != strings.Join(pings, "|") {
			t.Errorf("pongs %q, want %q", e.pongs, pings)
		}

		echo(t, e, frame.OpText, []byte("cmd:ping:hello"))
		if len(e.pings) != 1 || !srv.coder && e.pings[0] != "hello" {
			t.Fatalf("pings from %s: %q, want one (\"hello\" unless coder chose)", srv.name, e.pings)
		}
		events = append(events, ctl(frame.OpPong, e.pings[0]))
		if srv.coder {
			events = append(events, "Ping answered")
		}
		ourClose(t, e, 1000, "bye")
		srv.expectEvents(t, append(events, closeLine(1000, "bye"))...)
	})
}

// TestOurClient_TheirServer_Close_RFC6455_7_1_2: the closing handshake
// started by either side carries code and reason both ways (§5.5.1,
// §7.1.2). Their side reports the Close it read (gorilla:
// *websocket.CloseError; coder: CloseStatus and CloseError, and its own
// Close fails unless our answer has the same code); ours parses it with
// frame.ParseClose. An empty Close reads as 1005 on both sides (§7.1.5).
// The server closes the TCP connection first (§7.1.1).
func TestOurClient_TheirServer_Close_RFC6455_7_1_2(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv *theirServer) {
		for _, cc := range closeCases {
			code, reason := cc.code, cc.reason
			t.Run("we close "+closeName(code, reason), func(t *testing.T) {
				ourClose(t, srv.dial(t, 0), code, reason)
				srv.expectEvents(t, closeLine(code, reason))
			})
			t.Run("they close "+closeName(code, reason), func(t *testing.T) {
				e := srv.dial(t, 0)
				cmd := fmt.Sprintf("cmd:close:%d:%s", code, reason)
				if err := e.writeFrame(true, frame.OpText, []byte(cmd)); err != nil {
					t.Fatal(err)
				}
				_, err := e.readMessage()
				var c *closeReceived
				if !errors.As(err, &c) || c.code != code || c.reason != reason {
					t.Fatalf("read %v, want close %d %q", err, code, reason)
				}
				// Echo the code and reason, then wait for the server to
				// close the TCP connection.
				if err := e.writeClose(c.code, c.reason); err != nil {
					t.Fatal(err)
				}
				if err := e.awaitEOF(); err != nil {
					t.Fatal(err)
				}
				if srv.coder {
					// coder pinged first (see startCoder); we answered.
					if len(e.pings) != 1 {
						t.Fatalf("pings from coder: %q, want one", e.pings)
					}
					srv.expectEvents(t, ctl(frame.OpPong, e.pings[0]), closeLine(code, reason), "Close: <nil>")
				} else {
					srv.expectEvents(t, closeLine(code, reason))
				}
			})
		}
	})
}

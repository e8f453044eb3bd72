//go:build !race

// The race detector allocates on its own and makes sync.Pool drop a quarter
// of its Puts, so allocation counts mean nothing under -race.

package proxy

// Allocations per relayed frame (issue 12: "0 allocations per relayed frame
// in steady state"), measured end to end: a real gateway in this process,
// between a client and an upstream that are both written by hand so that
// they allocate nothing themselves. testing counts every malloc of the
// process, so any allocation the count shows is the gateway's.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/internal/wstest"
)

// allocYAML is the route of the allocation tests: production-like timers
// (keepalive pings armed, write deadlines refreshed), caps above the largest
// frame the tests send.
func allocYAML(upstream string) string {
	return relayYAML(upstream, "ping_interval", "30s", "pong_timeout", "10s", "idle_timeout", "5m",
		"write_timeout", "10s", "max_frame_bytes", "1MiB", "max_message_bytes", "4MiB")
}

// allocEchoUpstream is a raw TCP upstream: it answers one opening handshake and
// then echoes every frame, unmasked, until the connection ends. After the
// handshake it allocates nothing: one buffer, read and written in place.
type allocEchoUpstream struct {
	URL  string
	ln   net.Listener
	done chan struct{}
}

func newAllocEchoUpstream(t testing.TB, maxPayload int) *allocEchoUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &allocEchoUpstream{URL: "ws://" + ln.Addr().String(), ln: ln, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReaderSize(conn, 64<<10)
		if !answerUpgrade(conn, br) {
			return
		}
		echoFrames(conn, br, make([]byte, frame.MaxHeaderSize+maxPayload))
	}()
	t.Cleanup(func() {
		ln.Close()
		<-u.done
	})
	return u
}

// echoFrames echoes frames from br to w until an error or a Close (which it
// echoes too). buf holds the largest frame; the header of the echo is built
// right in front of the payload so that each frame is one write.
func echoFrames(w io.Writer, br *bufio.Reader, buf []byte) {
	const room = frame.MaxHeaderSize
	for {
		hdr := buf[:2]
		if _, err := io.ReadFull(br, hdr); err != nil {
			return
		}
		b0, masked, n := hdr[0], hdr[1]&0x80 != 0, int64(hdr[1]&0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, buf[:2]); err != nil {
				return
			}
			n = int64(binary.BigEndian.Uint16(buf[:2]))
		case 127:
			if _, err := io.ReadFull(br, buf[:8]); err != nil {
				return
			}
			n = int64(binary.BigEndian.Uint64(buf[:8]))
		}
		var key [4]byte
		if masked {
			if _, err := io.ReadFull(br, buf[:4]); err != nil {
				return
			}
			copy(key[:], buf[:4])
		}
		if n > int64(len(buf)-room) {
			return
		}
		p := buf[room : room+int(n)]
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		if masked {
			frame.Mask(key, 0, p)
		}
		// The echo: same FIN, RSV and opcode, no mask, minimal length.
		var hs int
		switch {
		case n > 0xFFFF:
			hs = 10
			buf[room-9] = 127
			binary.BigEndian.PutUint64(buf[room-8:room], uint64(n))
		case n > 125:
			hs = 4
			buf[room-3] = 126
			binary.BigEndian.PutUint16(buf[room-2:room], uint16(n))
		default:
			hs = 2
			buf[room-1] = byte(n)
		}
		buf[room-hs] = b0
		if _, err := w.Write(buf[room-hs : room+int(n)]); err != nil {
			return
		}
		if frame.Opcode(b0&0x0f) == frame.OpClose {
			return
		}
	}
}

// echoClient is a client of the gateway that sends one pre-built masked
// frame and reads its echo into a reused buffer: no allocation per round trip.
type echoClient struct {
	conn    net.Conn
	br      *bufio.Reader
	msg     []byte // the masked frame, as written
	payload []byte // what the echo must carry
	buf     []byte // the echo is read into this
}

// dialEchoClient opens a WebSocket to the gateway (wsHandshake) and prepares
// the frame it sends: payload as op, masked with a fixed key.
func dialEchoClient(t testing.TB, addr string, op frame.Opcode, payload []byte) *echoClient {
	t.Helper()
	a := wstest.MustHandshake(t, addr, "", nil)
	if a.Peer == nil {
		t.Fatalf("handshake: %d %s", a.Status(), a.Body)
	}
	conn := a.Peer.Conn
	// Large enough for a whole echoed frame in one read.
	br := bufio.NewReaderSize(a.Peer.BR, 64<<10)
	h := frame.Header{Fin: true, Opcode: op, Masked: true, Key: [4]byte{0x37, 0xfa, 0x21, 0x3d}}
	return &echoClient{
		conn:    conn,
		br:      br,
		msg:     frame.AppendFrame(nil, h, payload),
		payload: payload,
		buf:     make([]byte, frame.MaxHeaderSize+len(payload)),
	}
}

// roundTrip sends the frame and reads its echo; check compares the echoed
// payload too. Nothing in it allocates (errors aside).
func (c *echoClient) roundTrip(check bool) error {
	_ = c.conn.SetDeadline(time.Now().Add(relayIO))
	if _, err := c.conn.Write(c.msg); err != nil {
		return err
	}
	hdr := c.buf[:2]
	if _, err := io.ReadFull(c.br, hdr); err != nil {
		return err
	}
	if hdr[1]&0x80 != 0 {
		return errMaskedEcho
	}
	n := int(hdr[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.br, c.buf[:2]); err != nil {
			return err
		}
		n = int(binary.BigEndian.Uint16(c.buf[:2]))
	case 127:
		if _, err := io.ReadFull(c.br, c.buf[:8]); err != nil {
			return err
		}
		n = int(binary.BigEndian.Uint64(c.buf[:8]))
	}
	if n != len(c.payload) {
		return errWrongEcho
	}
	p := c.buf[:n]
	if _, err := io.ReadFull(c.br, p); err != nil {
		return err
	}
	if check && !bytes.Equal(p, c.payload) {
		return errWrongEcho
	}
	return nil
}

// Preallocated, so that a failing round trip is the only one that
// allocates.
var (
	errMaskedEcho = errors.New("echo frame is masked")
	errWrongEcho  = errors.New("echo differs from the message sent")
)

// echoSetup starts an echo upstream, a gateway routing to it, and a client
// that sends payloads of size bytes as op.
func echoSetup(t testing.TB, op frame.Opcode, size int) *echoClient {
	t.Helper()
	up := newAllocEchoUpstream(t, size)
	gw := startGateway(t, allocYAML(up.URL))
	payload := bytes.Repeat([]byte("relay-me"), size/8+1)[:size] // valid UTF-8 for text
	return dialEchoClient(t, gw.Addr, op, payload)
}

// mallocs is the process's count of heap allocations so far.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// maxAllocsPerFrame is what steady-state relaying may show per relayed frame:
// not zero only because the process has other goroutines (the test
// framework, the gateway's own housekeeping) that may allocate now and then
// during the run. One allocation per message in either direction would show
// as 0.5.
const maxAllocsPerFrame = 0.02

// Steady-state relaying allocates nothing: after a warm-up (pools filled,
// stacks grown), N round trips — 2N relayed frames — through the gateway
// must cost fewer than maxAllocsPerFrame heap allocations per frame, in
// total over the whole process. Text frames go through UTF-8 validation,
// binary ones through the one-pass re-mask, 64 KiB ones stream through the
// relay buffer instead of being validated whole.
func TestRelaySteadyStateAllocs(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   frame.Opcode
		size int
		n    int // round trips measured
	}{
		{"binary_16B", frame.OpBinary, 16, 20000},
		{"text_1KiB", frame.OpText, 1 << 10, 20000},
		{"binary_64KiB", frame.OpBinary, 64 << 10, 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := echoSetup(t, tc.op, tc.size)
			for i := 0; i < 1000; i++ {
				if err := c.roundTrip(true); err != nil {
					t.Fatalf("warm-up round trip %d: %v", i, err)
				}
			}
			before := mallocs()
			for i := 0; i < tc.n; i++ {
				if err := c.roundTrip(i%1024 == 0); err != nil {
					t.Fatalf("round trip %d: %v", i, err)
				}
			}
			got := mallocs() - before
			perFrame := float64(got) / float64(2*tc.n)
			t.Logf("%d allocations over %d relayed frames: %.4f per frame", got, 2*tc.n, perFrame)
			if perFrame >= maxAllocsPerFrame {
				t.Errorf("relaying allocates: %.3f allocations per frame (%d over %d frames), want < %v; "+
					"find them with: go test -run '^$' -bench 'BenchmarkRelayEcho/%s' -benchmem -memprofile mem.out ./proxy/ && "+
					"go tool pprof -sample_index=alloc_objects -list 'proxy\\.' proxy.test mem.out",
					perFrame, got, 2*tc.n, maxAllocsPerFrame, benchName(tc.size))
			}
		})
	}
}

// Control frames relayed end to end (a client's ping, echoed by the upstream
// as a ping of its own) are steady-state traffic too: keepalives of
// applications that do not rely on the gateway's. They allocate nothing
// either.
func TestRelayControlFrameAllocs(t *testing.T) {
	c := echoSetup(t, frame.OpPing, 16)
	for i := 0; i < 1000; i++ {
		if err := c.roundTrip(true); err != nil {
			t.Fatalf("warm-up round trip %d: %v", i, err)
		}
	}
	const n = 20000
	before := mallocs()
	for i := 0; i < n; i++ {
		if err := c.roundTrip(i%1024 == 0); err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
	}
	got := mallocs() - before
	perFrame := float64(got) / (2 * n)
	t.Logf("%d allocations over %d relayed ping frames: %.4f per frame", got, 2*n, perFrame)
	if perFrame >= maxAllocsPerFrame {
		t.Errorf("relaying control frames allocates: %.3f allocations per frame, want < %v; "+
			"see: go test -run '^$' -bench 'BenchmarkRelayEcho/ping' -benchmem -memprofile mem.out ./proxy/",
			perFrame, maxAllocsPerFrame)
	}
}

// BenchmarkRelayEcho relays binary messages (and pings) through a real gateway: one op
// is one round trip, a message from the client and its echo from the
// upstream, so two relayed frames (and 2×size payload bytes, which SetBytes
// counts). allocs/op is the whole process's, and the client and upstream
// allocate nothing: it is the gateway's allocations per two frames.
func BenchmarkRelayEcho(b *testing.B) {
	for _, bc := range []struct {
		name string
		op   frame.Opcode
		size int
	}{
		{"16B", frame.OpBinary, 16},
		{"1KiB", frame.OpBinary, 1 << 10},
		{"64KiB", frame.OpBinary, 64 << 10},
		{"ping_16B", frame.OpPing, 16}, // control frames take another path
	} {
		size := bc.size
		b.Run(bc.name, func(b *testing.B) {
			c := echoSetup(b, bc.op, size)
			for i := 0; i < 100; i++ {
				if err := c.roundTrip(true); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.SetBytes(int64(2 * size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.roundTrip(false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchName names a payload size as the benchmark does: 16B, 1KiB, 64KiB.
func benchName(size int) string {
	if size >= 1<<10 && size%(1<<10) == 0 {
		return strconv.Itoa(size>>10) + "KiB"
	}
	return strconv.Itoa(size) + "B"
}

package proxy

// Streaming (docs/relay.md "Fragmentation and streaming": a large message
// does not need its size in memory): a 256 MiB message between peers that stream it themselves,
// while the heap in use (of this process: gateway and peers) is sampled.
// The peers use fixed buffers, so any growth is the gateway's.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/internal/relay"
	"wsgate/internal/wstest"
)

const (
	streamSize      = 256 << 20
	testStreamChunk = 64 << 10
)

// heapSampler records the largest HeapInuse seen above a baseline taken
// after a GC.
type heapSampler struct {
	base uint64
	max  atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func startHeapSampler() *heapSampler {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapSampler{base: ms.HeapInuse, stop: make(chan struct{}), done: make(chan struct{})}
	h.max.Store(ms.HeapInuse)
	go func() {
		defer close(h.done)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tk.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.max.Load() {
				h.max.Store(ms.HeapInuse)
			}
		}
	}()
	return h
}

// growth stops sampling and returns the largest growth over the baseline.
func (h *heapSampler) growth() int64 {
	close(h.stop)
	<-h.done
	return int64(h.max.Load()) - int64(h.base)
}

// streamBlock is the data pattern: byte i of a message is block[i%len].
var streamBlock = pattern(testStreamChunk, 0x5a)

// maskedBlock returns the pattern block masked with key, phase 0 at its
// start. Frames start at multiples of 4 in the message and chunks at
// multiples of the block, so byte s of any chunk of a frame masked with key
// is maskedBlock(key)[s]: the peers never mask byte by byte (which costs
// ~40 MB/s under -race) and the only per-byte work is the gateway's.
func maskedBlock(key [4]byte) []byte {
	b := bytes.Clone(streamBlock)
	frame.Mask(key, 0, b)
	return b
}

// writeStream writes n bytes of the pattern as the payload of frames of at
// most frameSize bytes (a multiple of 4; one message), masked if p is the
// client. It streams: no buffer grows with n.
func writeStream(p *wstest.Peer, n, frameSize int64) error {
	var hb [frame.MaxHeaderSize]byte
	var pos int64 // position in the message
	for pos < n {
		fl := min(frameSize, n-pos)
		op := frame.OpContinuation
		if pos == 0 {
			op = frame.OpBinary
		}
		h := p.Header(pos+fl == n, op)
		h.Length = fl
		block := streamBlock
		if h.Masked {
			block = maskedBlock(h.Key)
		}
		if err := p.WriteErr(hb[:frame.PutHeader(hb[:], h)]); err != nil {
			return err
		}
		for end := pos + fl; pos < end; {
			s := pos % testStreamChunk
			k := min(testStreamChunk-s, end-pos)
			if err := p.WriteErr(block[s : s+k]); err != nil {
				return err
			}
			pos += k
		}
	}
	return nil
}

// readStream reads one message as frames of any size, in chunks, checks
// every byte against the pattern, and returns its size and frame count.
func readStream(p *wstest.Peer) (n int64, frames int, err error) {
	buf := make([]byte, testStreamChunk)
	for {
		_ = p.Conn.SetReadDeadline(time.Now().Add(relayIO))
		h, err := frame.ReadHeader(p.BR, frame.Rules{})
		if err != nil {
			return n, frames, err
		}
		frames++
		if h.Masked == p.Client {
			return n, frames, fmt.Errorf("frame %d masked=%v", frames, h.Masked)
		}
		if want := frame.OpContinuation; frames == 1 && h.Opcode != frame.OpBinary || frames > 1 && h.Opcode != want {
			return n, frames, fmt.Errorf("frame %d opcode %v", frames, h.Opcode)
		}
		if n%4 != 0 {
			return n, frames, fmt.Errorf("frame %d starts at %d", frames, n)
		}
		block := streamBlock
		if h.Masked {
			block = maskedBlock(h.Key)
		}
		for end := n + h.Length; n < end; {
			s := n % testStreamChunk
			k := min(testStreamChunk-s, end-n)
			c := buf[:k]
			_ = p.Conn.SetReadDeadline(time.Now().Add(relayIO))
			if _, err := io.ReadFull(p.BR, c); err != nil {
				return n, frames, err
			}
			if !bytes.Equal(c, block[s:s+k]) {
				return n, frames, fmt.Errorf("payload differs at byte %d", n)
			}
			n += k
		}
		if h.Fin {
			return n, frames, nil
		}
	}
}

// streamOnce relays one 256 MiB message in frames of frameSize, client to
// upstream or upstream to client, and checks the heap growth.
func streamOnce(t *testing.T, frameSize int64, toUpstream bool) {
	up, ups := rawUpstreamChan(t)
	gw := startGateway(t, relayYAML(up.URL, "max_frame_bytes", "512MiB", "max_message_bytes", "512MiB", "write_timeout", "10s"))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	src, dst := c, u
	if !toUpstream {
		src, dst = u, c
	}
	heap := startHeapSampler()
	start := time.Now()
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		werr = writeStream(src, streamSize, frameSize)
	}()
	n, frames, rerr := readStream(dst)
	wg.Wait()
	el := time.Since(start)
	grow := heap.growth()
	if werr != nil || rerr != nil {
		t.Fatalf("write: %v, read: %v (after %d bytes)", werr, rerr, n)
	}
	if n != streamSize || frames != int((streamSize+frameSize-1)/frameSize) {
		t.Fatalf("got %d bytes in %d frames", n, frames)
	}
	t.Logf("256 MiB in %d frames in %v (%.0f MiB/s); heap in use grew by %.1f MiB (limit %d MiB)",
		frames, el.Round(time.Millisecond), float64(streamSize>>20)/el.Seconds(), float64(grow)/(1<<20), heapLimit>>20)
	if grow >= heapLimit {
		t.Errorf("heap in use grew by %d bytes relaying 256 MiB, want < %d", grow, heapLimit)
	}
	// The session goes on normally afterwards.
	echoCheckRaw(c, u, "after")
	c.SendClose(1000, "")
	u.ExpectClose(1000, "")
	u.SendClose(1000, "")
	u.Conn.Close()
	c.ExpectClose(1000, "")
	c.ExpectEOF(2 * time.Second)
	expectLog(t, gw, "reason", "normal", "truncated", "false")
}

// echoCheckRaw sends msg from client p to raw upstream u and back.
func echoCheckRaw(p *wstest.Peer, u *wstest.Peer, msg string) {
	p.T.Helper()
	p.Send(true, frame.OpText, []byte(msg))
	if f := nextData(u); f.Opcode != frame.OpText || string(f.Payload) != msg {
		p.T.Fatalf("upstream got %v, want %q", f, msg)
	}
	u.Send(true, frame.OpText, []byte(msg))
	if f := nextData(p); f.Opcode != frame.OpText || string(f.Payload) != msg {
		p.T.Fatalf("client got %v, want %q", f, msg)
	}
}

// nextData is next, skipping pings (the gateway's keepalive).
func nextData(p *wstest.Peer) wstest.Frame {
	p.T.Helper()
	for {
		if f := p.Next(); f.Opcode != frame.OpPing {
			return f
		}
	}
}

// One 256 MiB frame, client -> upstream.
func TestRelayStreamOneFrame(t *testing.T) {
	streamOnce(t, streamSize, true)
}

// One 256 MiB message in 1 MiB frames, upstream -> client.
func TestRelayStreamFragmented(t *testing.T) {
	streamOnce(t, 1<<20, false)
}

// TestStreamBufCap: large frames stream through a streamChunk buffer while
// fewer than maxStreamBufs are out, and through the 16 KiB relay buffer
// once they all are (peers sending large frames slowly cannot pin more than
// maxStreamBufs × streamChunk); frames arrive intact either way, in both
// directions (RFC 6455 §5.3: re-masked towards the upstream, unmasked
// back). Not parallel: it holds every large buffer of the process.
func TestStreamBufCap(t *testing.T) {
	gw := startGateway(t, relayYAML("builtin:echo", "max_frame_bytes", "2MiB", "max_message_bytes", "4MiB"))
	echo := func(what string, size int) {
		t.Helper()
		p := wstest.DialRaw(t, gw.Addr, "/")
		payload := pattern(size, byte(size))
		p.Send(true, frame.OpBinary, payload)
		f := p.Next()
		if f.Opcode != frame.OpBinary || f.Masked || !bytes.Equal(f.Payload, payload) {
			t.Fatalf("%s: echo of %d bytes came back as %v with %d bytes", what, size, f.Opcode, len(f.Payload))
		}
		p.SendClose(1000, "")
		p.ExpectClose(1000, "")
	}
	echo("large buffers free", 1<<20+123)

	n, release := relay.TakeStreamBufs()
	if n != relay.MaxStreamBufs {
		release()
		t.Fatalf("took %d large stream buffers, want exactly MaxStreamBufs (%d)", n, relay.MaxStreamBufs)
	}
	echo("every large buffer out", 1<<20+123)
	release()
	n, release = relay.TakeStreamBufs()
	release()
	if n != relay.MaxStreamBufs {
		t.Fatalf("%d large stream buffers free after all were put back, want %d", n, relay.MaxStreamBufs)
	}
}

// slowReader reads from c at about rate bytes per second, in small reads.
type slowReader struct {
	c    net.Conn
	rate int
}

func (r slowReader) Read(p []byte) (int, error) {
	const step = 4 << 10
	p = p[:min(len(p), step)]
	time.Sleep(time.Duration(len(p)) * time.Second / time.Duration(r.rate))
	return r.c.Read(p)
}

// A client that reads slowly but steadily is slowed, not cut (docs/relay.md "write_timeout and
// backpressure": a slow reader slows its sender; only a peer that takes no write within
// write_timeout is gone), even though a streamed chunk takes it longer than
// write_timeout to read: the timeout runs from the last write it took any
// of. The gateway's send buffer is shrunk so that the chunks cannot all sit
// in the kernel.
func TestStreamSlowReader(t *testing.T) {
	up, ups := rawUpstreamChan(t)
	// write_timeout is 1 s, not less: with the small buffers below, the
	// client's receive window closes now and then, and TCP's zero-window
	// probe (200 ms and up) is what reopens it. A shorter timeout made
	// the test depend on that timing.
	gw := startGateway(t, relayYAML(up.URL, "write_timeout", "1s", "max_frame_bytes", "1MiB", "max_message_bytes", "1MiB"))
	c := wstest.DialRaw(t, gw.Addr, "/")
	u := recvPeer(t, ups)
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(16 << 10)
	}
	waitFor(t, "the session", func() bool { return gw.Sessions() == 1 })
	if err := gw.clientTCP()[0].SetWriteBuffer(32 << 10); err != nil {
		t.Fatal(err)
	}
	payload := pattern(640<<10, 7)
	// The upstream's write blocks while the client reads: no deadline
	// short of the test's own.
	sent := make(chan error, 1)
	go func() {
		_ = u.Conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := u.Conn.Write(frame.AppendFrame(nil, u.Header(true, frame.OpBinary), payload))
		sent <- err
	}()
	// 128 KiB/s: a 256 KiB chunk takes about 2 s, twice write_timeout.
	_ = c.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	buffered, _ := c.BR.Peek(c.BR.Buffered())
	slow := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(buffered), slowReader{c: c.Conn, rate: 128 << 10}), 4<<10)
	start := time.Now()
	h, err := frame.ReadHeader(slow, frame.Rules{})
	if err != nil || h.Opcode != frame.OpBinary || h.Length != int64(len(payload)) {
		t.Fatalf("slow client: header %v, %v; want a %d-byte binary frame", h, err, len(payload))
	}
	got := make([]byte, h.Length)
	if n, err := io.ReadFull(slow, got); err != nil {
		t.Fatalf("slow client: %v after %d of %d bytes (write_timeout 1s)", err, n, len(got))
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("slow client: the payload differs")
	}
	if slow.Buffered() > 0 {
		t.Fatalf("%d bytes after the frame", slow.Buffered())
	}
	c.BR = bufio.NewReader(c.Conn)
	t.Logf("read %d KiB in %v (write_timeout 1s)", len(got)>>10, time.Since(start).Round(time.Millisecond))
	if err := <-sent; err != nil {
		t.Fatalf("upstream write: %v", err)
	}
	c.SendClose(1000, "")
	u.ExpectClose(1000, "")
	u.SendClose(1000, "")
	c.ExpectClose(1000, "")
}

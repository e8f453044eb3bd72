package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"wsgate/frame"
	"wsgate/handshake"
)

// The backend is the upstream every target relays to: one process shared
// by all of them, so it is the same work behind each proxy. A path ending
// in /sink discards what it receives; any other path echoes every frame
// back as it came (same opcode, same fragmentation, unmasked). On a Close
// it answers with the same code and closes the TCP connection at once, as
// RFC 6455 §7.1.1 asks of a server.

// serveBackend accepts connections on ln until ctx ends.
func serveBackend(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE, ECONNABORTED and the like pass; back off a little so
			// a full descriptor table does not turn into a busy loop.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		go handleBackend(nc)
	}
}

const backendReadBuffer = 4096

func handleBackend(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReaderSize(nc, backendReadBuffer)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	r, rej := handshake.Check(req)
	if rej != nil {
		fmt.Fprintf(nc, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", rej.Status, http.StatusText(rej.Status))
		return
	}
	var hb [256]byte
	var extra http.Header
	if tags := req.URL.Query().Get("tags"); tags != "" {
		// Tags for the gateway's sessions API (the broadcast scenario).
		extra = http.Header{"X-Wsgate-Tags": {tags}}
	}
	resp := handshake.AppendResponse101(hb[:0], r.Key, "", extra)
	if d := backendDeflate(r.Extensions); d != nil { // deflate.go
		resp = append(resp[:len(resp)-2], "Sec-WebSocket-Extensions: "+d.String()+"\r\n\r\n"...)
	}
	if _, err := nc.Write(resp); err != nil {
		return
	}
	_ = nc.SetReadDeadline(time.Time{})
	if strings.HasSuffix(req.URL.Path, "/sink") {
		sinkLoop(nc, br)
	} else {
		echoLoop(nc, br)
	}
}

// backendRules allow RSV1: compressed frames are echoed as they came.
var backendRules = frame.Rules{Sender: frame.FromClient, MaxPayload: 64 << 20, AllowRsv: frame.Rsv1}

// control handles a control frame whose header was read: a ping gets its
// pong, a close its reply (then the caller closes). It reports whether the
// session is over.
func control(w io.Writer, br *bufio.Reader, h frame.Header) (done bool, err error) {
	var p [frame.MaxControlPayload]byte
	n := int(h.Length)
	if _, err := io.ReadFull(br, p[:n]); err != nil {
		return true, err
	}
	frame.Mask(h.Key, 0, p[:n])
	var out [frame.MaxHeaderSize + frame.MaxControlPayload]byte
	switch h.Opcode {
	case frame.OpPing:
		_, err = w.Write(frame.AppendFrame(out[:0], frame.Header{Fin: true, Opcode: frame.OpPong}, p[:n]))
		return false, err
	case frame.OpClose:
		code, _, perr := frame.ParseClose(p[:n])
		if perr != nil {
			code = frame.CloseProtocolError
		}
		reply := frame.AppendClose(nil, code, "")
		_, err = w.Write(frame.AppendFrame(out[:0], frame.Header{Fin: true, Opcode: frame.OpClose}, reply))
		return true, err
	}
	return false, nil // pong
}

// echoLoop sends every data frame back. Replies collect in a bufio.Writer
// that is flushed whenever no further request is buffered, so a pipelined
// burst is answered with one write.
func echoLoop(nc net.Conn, br *bufio.Reader) {
	bw := bufio.NewWriterSize(nc, 4096)
	var chunk []byte
	hb := make([]byte, frame.MaxHeaderSize) // on the heap once, not per frame
	for {
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
		h, err := frame.ReadHeader(br, backendRules)
		if err != nil {
			return
		}
		if h.Opcode.IsControl() {
			done, err := control(bw, br, h)
			if done || err != nil {
				_ = bw.Flush()
				return
			}
			continue
		}
		out := frame.Header{Fin: h.Fin, Rsv: h.Rsv, Opcode: h.Opcode, Length: h.Length}
		if _, err := bw.Write(hb[:frame.PutHeader(hb, out)]); err != nil {
			return
		}
		n := int(h.Length)
		if n <= br.Size() {
			// Unmask in the reader's own buffer: no copy for small frames.
			p, err := br.Peek(n)
			if err != nil {
				return
			}
			frame.Mask(h.Key, 0, p)
			_, err = bw.Write(p)
			_, _ = br.Discard(n)
			if err != nil {
				return
			}
			continue
		}
		if chunk == nil {
			chunk = make([]byte, 64<<10)
		}
		pos := 0
		for n > 0 {
			c := chunk[:min(n, len(chunk))]
			if _, err := io.ReadFull(br, c); err != nil {
				return
			}
			pos = frame.Mask(h.Key, pos, c)
			if _, err := bw.Write(c); err != nil {
				return
			}
			n -= len(c)
		}
	}
}

// sinkLoop reads and drops data frames without unmasking them; reads of a
// large payload go straight from the socket into one scratch buffer.
func sinkLoop(nc net.Conn, br *bufio.Reader) {
	var scratch []byte
	for {
		h, err := frame.ReadHeader(br, backendRules)
		if err != nil {
			return
		}
		if h.Opcode.IsControl() {
			if done, err := control(nc, br, h); done || err != nil {
				return
			}
			continue
		}
		n := h.Length
		if scratch == nil && n > backendReadBuffer {
			scratch = make([]byte, 256<<10)
		}
		for n > 0 {
			if n <= int64(br.Buffered()) {
				_, _ = br.Discard(int(n))
				break
			}
			c := scratch
			if c == nil {
				c = make([]byte, backendReadBuffer)
				scratch = c
			}
			c = c[:min(n, int64(len(c)))]
			k, err := io.ReadFull(br, c)
			if err != nil {
				return
			}
			n -= int64(k)
		}
	}
}

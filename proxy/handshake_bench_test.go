package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/handshake"
)

// BenchmarkGatewayHandshake measures what one session costs the gateway
// when it is opened and closed at once (bench/compare.sh's handshake-rate):
// the client's handshake, the upstream's, the 101, the client's Close relayed
// and answered. The client and the upstream are written by hand and
// allocate little, so that B/op and allocs/op are mostly the gateway's (the
// peers' own connections included: compare runs, not absolute figures).
func BenchmarkGatewayHandshake(b *testing.B) {
	up := newHandshakeUpstream(b)
	gw := startGateway(b, relayYAML(up, "ping_interval", "30s"))
	req := []byte("GET /chat?room=1 HTTP/1.1\r\nHost: " + gw.Addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Origin: https://app.example\r\nUser-Agent: wsbench\r\nCookie: sid=abc\r\n\r\n")
	closeFrame := frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpClose, Masked: true, Key: [4]byte{1, 2, 3, 4}}, []byte{0x03, 0xe8})
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", gw.Addr)
		if err != nil {
			b.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(relayIO))
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		n := 0
		for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			k, err := c.Read(buf[n:])
			if err != nil {
				b.Fatalf("after %q: %v", buf[:n], err)
			}
			n += k
		}
		if !bytes.HasPrefix(buf, []byte("HTTP/1.1 101 ")) {
			b.Fatalf("got %q", buf[:n])
		}
		if _, err := c.Write(closeFrame); err != nil {
			b.Fatal(err)
		}
		// The Close reply, then the gateway's FIN.
		if _, err := io.Copy(io.Discard, c); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// newHandshakeUpstream serves WebSocket handshakes by hand: each connection
// gets its 101, then every Close frame is answered with a Close, and the
// connection is closed once the gateway closes it.
func newHandshakeUpstream(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				var key string
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) <= 2 {
						break
					}
					if k, ok := bytes.CutPrefix(line, []byte("Sec-WebSocket-Key: ")); ok {
						key = string(bytes.TrimSpace(k))
					}
				}
				if _, err := c.Write(handshake.AppendResponse101(nil, key, "", nil)); err != nil {
					return
				}
				// The gateway's Close (masked, code 1000), answered.
				var f [8]byte
				if _, err := io.ReadFull(br, f[:]); err != nil || f[0] != 0x88 {
					return
				}
				if _, err := c.Write([]byte{0x88, 0x02, 0x03, 0xe8}); err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, br)
			}()
		}
	}()
	return "ws://" + ln.Addr().String()
}

package echo

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"time"

	"wsgate/frame"
	"wsgate/handshake"
)

// Dial is the NetDialContext of builtin:echo upstreams: an in-process
// RFC 6455 echo server on the far end of a pipe, so the demo route needs no
// socket and no file descriptor.
func Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c1, c2 := net.Pipe()
	go Serve(c2)
	return c1, nil
}

// serveEcho answers one opening handshake and then echoes every message as
// it was framed, answers pings, and completes the close handshake: a strict
// server (masked frames required, UTF-8 checked) so that the demo route
// shows the gateway's real behaviour.
// Serve answers one opening handshake on conn and echoes until it ends.
func Serve(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	hs, rej := handshake.Check(req)
	if rej != nil {
		_, _ = conn.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	proto := ""
	if len(hs.Protocols) > 0 {
		proto = hs.Protocols[0]
	}
	if _, err := conn.Write(handshake.AppendResponse101(nil, hs.Key, proto, nil)); err != nil {
		return
	}
	_ = conn.SetDeadline(time.Time{})
	Loop(conn, br)
}

// Loop echoes frames on conn (after its opening handshake; br holds what was
// read past it) until the close handshake or an error. Tests use it as a
// strict RFC 6455 echo server.
func Loop(conn net.Conn, br *bufio.Reader) {
	rules := frame.Rules{Sender: frame.FromClient}
	var msg frame.Message
	buf := make([]byte, frame.MaxHeaderSize+32<<10)
	closeWith := func(code frame.CloseCode, reason string) {
		var p [frame.MaxControlPayload]byte
		_, _ = conn.Write(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpClose}, frame.AppendClose(p[:0], code, reason)))
	}
	for {
		h, err := frame.ReadHeader(br, rules)
		if err != nil {
			if code, ok := frame.CodeOf(err); ok {
				closeWith(code, "")
			}
			return
		}
		if h.Opcode.IsControl() {
			p := buf[:h.Length]
			if _, err := readFull(br, p); err != nil {
				return
			}
			frame.Mask(h.Key, 0, p)
			switch h.Opcode {
			case frame.OpPing:
				if _, err := conn.Write(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpPong}, p)); err != nil {
					return
				}
			case frame.OpClose:
				code, reason, err := frame.ParseClose(p)
				if err != nil {
					c, _ := frame.CodeOf(err)
					closeWith(c, "")
				} else {
					closeWith(code, string(reason))
				}
				return
			}
			continue
		}
		if err := msg.Next(h); err != nil {
			c, _ := frame.CodeOf(err)
			closeWith(c, "")
			return
		}
		out := frame.Header{Fin: h.Fin, Opcode: h.Opcode, Length: h.Length}
		hs := frame.PutHeader(buf, out)
		pos, first := int64(0), true
		if h.Length == 0 {
			if err := msg.EndFrame(); err != nil {
				closeWith(frame.CloseInvalidPayload, "")
				return
			}
			if _, err := conn.Write(buf[:hs]); err != nil {
				return
			}
			continue
		}
		for pos < h.Length {
			n := min(h.Length-pos, int64(len(buf)-frame.MaxHeaderSize))
			p := buf[frame.MaxHeaderSize : frame.MaxHeaderSize+int(n)]
			k, err := br.Read(p)
			if err != nil {
				return
			}
			p = p[:k]
			frame.Mask(h.Key, int(pos), p)
			pos += int64(k)
			err = msg.Payload(p)
			if err == nil && pos == h.Length {
				err = msg.EndFrame()
			}
			if err != nil {
				closeWith(frame.CloseInvalidPayload, "")
				return
			}
			b := p
			if first {
				copy(buf[frame.MaxHeaderSize-hs:], buf[:hs])
				b = buf[frame.MaxHeaderSize-hs : frame.MaxHeaderSize+k]
				first = false
			}
			if _, err := conn.Write(b); err != nil {
				return
			}
		}
	}
}

func readFull(br *bufio.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := br.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

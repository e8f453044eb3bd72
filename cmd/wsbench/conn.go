package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"wsgate/frame"
	"wsgate/handshake"
)

// The client is wsgate's own codec (frame/) and upstream dialer
// (handshake.Dialer) driven without any message abstraction: a frame is
// built into a reused buffer and written with one system call, a reply is
// read through the 4 KiB bufio.Reader the dialer returns. Nothing on the
// hot path allocates, so the client costs little next to what it measures.
//
// For wss:// the dialer wraps the TCP connection in a crypto/tls client
// (HTTP/1.1 by ALPN, SNI from the URL's host) with one shared tls.Config,
// and the reply reader is the same 4 KiB bufio.Reader over the *tls.Conn.
// Nothing else is added per connection: an idle wss:// session costs the
// client the TLS connection's record and handshake buffers and its AES-GCM
// state (about 9 KiB of heap; Go shares the parsed server certificate
// between connections) on top of what a ws:// one costs (the reader, the
// conn and one parked goroutine, about 7 KiB).

// client dials WebSocket connections to one URL.
type client struct {
	u      *url.URL
	d      handshake.Dialer
	next   atomic.Uint32
	nsrc   int
	srcIP0 net.IP
	// deflate is the permessage-deflate offer of every dial (nil: none).
	deflate *handshake.DeflateOffer
}

// newClient returns a client for rawURL, ws:// or wss://. tlsConf is used
// for wss:// (nil: verify against the system roots); the dialer clones it
// per connection. With sources > 1, connections are bound to 127.0.0.2,
// 127.0.0.3, … in turn: one source address has only ~28,000 ephemeral
// ports, which idle-mem and handshake-rate can exhaust.
func newClient(rawURL string, sources int, tlsConf *tls.Config) (*client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, fmt.Errorf("only ws:// and wss:// URLs are supported, got %q", rawURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("no host in %q", rawURL)
	}
	c := &client{u: u, nsrc: sources, srcIP0: net.IPv4(127, 0, 0, 2)}
	if u.Scheme == "wss" {
		c.d.TLSConfig = tlsConf
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); sources > 1 && (ip == nil || !ip.IsLoopback() || ip.To4() == nil) {
		c.nsrc = 0 // spreading sources only makes sense toward 127.0.0.0/8
	}
	c.d.NetDialContext = c.dialTCP
	return c, nil
}

func (c *client) dialTCP(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: bindNoPort}
	if c.nsrc > 1 {
		i := int(c.next.Add(1)) % c.nsrc
		ip := make(net.IP, 4)
		copy(ip, c.srcIP0.To4())
		ip[3] += byte(i)
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true) // Go's default; kept explicit, it matters for the RTT
	}
	return nc, nil
}

// dial opens one connection to path (appended to the client URL's path).
func (c *client) dial(ctx context.Context, path string) (*conn, error) {
	u := *c.u
	path, u.RawQuery, _ = strings.Cut(path, "?")
	u.Path = joinPath(u.Path, path)
	up, err := c.d.DialDeflate(ctx, &u, nil, nil, c.deflate)
	if err != nil {
		return nil, err
	}
	cn := &conn{nc: up.Conn, br: up.Reader}
	if c.deflate != nil {
		if !up.DeflateOn {
			up.Conn.Close()
			return nil, errors.New("permessage-deflate offered but not negotiated")
		}
		cn.rsv = frame.Rsv1
	}
	return cn, nil
}

func joinPath(a, b string) string {
	switch {
	case a == "" || a == "/":
		return b
	case b == "" || b == "/":
		return a
	case a[len(a)-1] == '/':
		return a + b[1:]
	}
	return a + b
}

// conn is one client connection. Reads belong to one goroutine; writes go
// through wmu, because the reader answers pings while another goroutine
// may be sending.
type conn struct {
	nc   net.Conn
	br   *bufio.Reader
	rbuf []byte
	rsv  uint8 // frame.Rsv1 when permessage-deflate was negotiated

	wmu  sync.Mutex
	wbuf []byte
}

// errClosed is returned by readMessage when the server sent a Close frame;
// conn.closeCode holds its code.
var errClosed = errors.New("server sent a close frame")

// appendMasked appends a masked frame carrying payload to dst, with a
// fresh masking key as RFC 6455 §5.3 requires of a client.
func appendMasked(dst []byte, op frame.Opcode, payload []byte) []byte {
	h := frame.Header{Fin: true, Opcode: op, Masked: true, Key: frame.NewKey(), Length: int64(len(payload))}
	return frame.AppendFrame(dst, h, payload)
}

// write writes b (whole frames) under the write lock.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	_, err := c.nc.Write(b)
	c.wmu.Unlock()
	return err
}

// send writes one masked data frame.
func (c *conn) send(op frame.Opcode, payload []byte) error {
	c.wmu.Lock()
	c.wbuf = appendMasked(c.wbuf[:0], op, payload)
	_, err := c.nc.Write(c.wbuf)
	c.wmu.Unlock()
	return err
}

// readMessage returns the next data message (reassembled if fragmented).
// It answers pings, skips pongs, and returns errClosed with the code once
// the server's Close arrives. The payload is valid until the next call.
func (c *conn) readMessage() (frame.Opcode, []byte, frame.CloseCode, error) {
	var op frame.Opcode
	msg := c.rbuf[:0]
	for {
		h, err := frame.ReadHeader(c.br, frame.Rules{Sender: frame.FromServer, MaxPayload: 64 << 20, AllowRsv: c.rsv})
		if err != nil {
			return 0, nil, 0, err
		}
		if h.Opcode.IsControl() {
			var p [frame.MaxControlPayload]byte
			n := int(h.Length)
			if _, err := io.ReadFull(c.br, p[:n]); err != nil {
				return 0, nil, 0, err
			}
			switch h.Opcode {
			case frame.OpPing:
				var b [frame.MaxHeaderSize + frame.MaxControlPayload]byte
				if err := c.write(appendMasked(b[:0], frame.OpPong, p[:n])); err != nil {
					return 0, nil, 0, err
				}
			case frame.OpClose:
				code, _, _ := frame.ParseClose(p[:n])
				return 0, nil, code, errClosed
			}
			continue
		}
		if h.Opcode != frame.OpContinuation {
			op = h.Opcode
		}
		start := len(msg)
		n := int(h.Length)
		if cap(msg)-start < n {
			grown := make([]byte, start, start+n)
			copy(grown, msg)
			msg = grown
		}
		msg = msg[:start+n]
		if _, err := io.ReadFull(c.br, msg[start:]); err != nil {
			return 0, nil, 0, err
		}
		if h.Fin {
			c.rbuf = msg[:0]
			return op, msg, 0, nil
		}
	}
}

// closeHandshake sends Close(1000), waits for the server's Close and then
// for its FIN (RFC 6455 §7.1.1: the server closes the TCP connection
// first, so the TIME_WAIT state stays on its side and this client's ports
// are free again at once), and closes. It reports whether the close was
// clean: a Close frame came back.
func (c *conn) closeHandshake(timeout time.Duration) bool {
	defer c.nc.Close()
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	var b [16]byte
	if err := c.write(appendMasked(b[:0], frame.OpClose, frame.AppendClose(nil, frame.CloseNormal, ""))); err != nil {
		return false
	}
	for {
		_, _, _, err := c.readMessage()
		if errors.Is(err, errClosed) {
			break
		}
		if err != nil {
			return false
		}
	}
	// Wait for the FIN; the Close frame already made this a clean close.
	_, _ = io.Copy(io.Discard, c.br)
	return true
}

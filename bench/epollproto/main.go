//go:build linux

// Command epollproto is a measuring prototype, not part of the gateway: the
// smallest event-driven WebSocket relay for plain TCP legs, to compare with
// wsgate's goroutine-per-direction relay on the same load (issue 23,
// "Performance, part 3"; README "Benchmarks"). bench/compare.sh runs it as
// the target `epoll-proto`.
//
// One goroutine locked to its thread drives every socket through one
// edge-triggered epoll set, as nginx does: a readable socket is read until
// a read comes back short (the receive queue is then empty, and the next
// edge will say when more arrives), so a message costs one read and one
// write per direction, and no EAGAIN read. It does the relay work that
// matters for the comparison — the opening handshake checked with
// handshake.Check, the upstream dialled with a non-blocking connect and its
// 101 verified, every frame header decoded and checked, client payloads
// unmasked, checked for UTF-8 and masked again with a fresh key, close
// frames relayed and the sockets closed once both Closes have passed — and
// leaves out what does not: TLS, limits, timers, keepalive pings, close
// translation, logs and metrics.
//
//	epollproto -listen 127.0.0.1:8081 -backend 127.0.0.1:9001
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"wsgate/frame"
	"wsgate/handshake"
)

const (
	bufSize  = 64 << 10 // per leg, for reading; a frame's payload streams through it
	maxFrame = 16 << 20
)

type state uint8

const (
	stRequest    state = iota // reading the client's upgrade request
	stConnecting              // the upstream connect is in progress
	stAwait101                // the upgrade request is sent; reading the upstream's 101
	stRelay
)

// leg is one socket of a session.
type leg struct {
	fd    int
	s     *session
	peer  *leg
	toUp  bool // frames read here go to the upstream (this is the client leg)
	in    []byte
	n     int    // bytes in in
	out   []byte // bytes waiting for the socket to take them
	rules frame.Rules
	msg   frame.Message
	// The frame whose payload is streaming through.
	rem    int64
	inKey  [4]byte
	outKey [4]byte
	inPos  int
	outPos int
	masked bool
	gotClose,
	sentClose bool
	eof bool
}

type session struct {
	c, u     *leg
	st       state
	key      string // the client's Sec-WebSocket-Key
	upKey    string // ours toward the upstream
	target   string // request target
	host     string
	protocol string
	closed   bool
}

type loop struct {
	epfd    int
	lfd     int
	backend syscall.SockaddrInet4
	bhost   string
	legs    map[int]*leg
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve ws:// on")
	backend := flag.String("backend", "127.0.0.1:9001", "upstream address (plain ws://)")
	flag.Parse()
	runtime.LockOSThread()
	l, err := newLoop(*listen, *backend)
	if err != nil {
		fmt.Fprintln(os.Stderr, "epollproto:", err)
		os.Exit(1)
	}
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
		os.Exit(0)
	}()
	fmt.Fprintln(os.Stderr, "epollproto: listening on", *listen)
	l.run()
}

func sockaddr(addr string) (syscall.SockaddrInet4, error) {
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return syscall.SockaddrInet4{}, err
	}
	var sa syscall.SockaddrInet4
	copy(sa.Addr[:], ta.IP.To4())
	sa.Port = ta.Port
	return sa, nil
}

func newLoop(listen, backend string) (*loop, error) {
	la, err := sockaddr(listen)
	if err != nil {
		return nil, err
	}
	ba, err := sockaddr(backend)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(fd, &la); err != nil {
		return nil, err
	}
	if err := syscall.Listen(fd, 4096); err != nil {
		return nil, err
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
		return nil, err
	}
	return &loop{epfd: epfd, lfd: fd, backend: ba, bhost: backend, legs: map[int]*leg{}}, nil
}

func (l *loop) run() {
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(l.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			panic(err)
		}
		for i := range n {
			ev := events[i]
			fd := int(ev.Fd)
			if fd == l.lfd {
				l.accept()
				continue
			}
			g := l.legs[fd]
			if g == nil {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 {
				l.writable(g)
			}
			if g.s.closed {
				continue
			}
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				l.readable(g)
			}
		}
	}
}

func (l *loop) register(fd int) error {
	return syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd,
		&syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | (syscall.EPOLLET & 0xffffffff), Fd: int32(fd)})
}

func (l *loop) accept() {
	for {
		fd, _, err := syscall.Accept4(l.lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN, or a transient error: wait for the next event
		}
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		s := &session{}
		c := &leg{fd: fd, s: s, toUp: true, in: make([]byte, bufSize),
			rules: frame.Rules{Sender: frame.FromClient, MaxPayload: maxFrame}}
		c.msg.MaxSize = maxFrame
		s.c = c
		l.legs[fd] = c
		if err := l.register(fd); err != nil {
			l.close(s)
		}
	}
}

// readable reads g until a read comes back short, processing what arrives.
func (l *loop) readable(g *leg) {
	for !g.s.closed {
		if g.n == len(g.in) {
			// A head or a frame header larger than the buffer: give up.
			l.close(g.s)
			return
		}
		room := len(g.in) - g.n
		n, err := syscall.Read(g.fd, g.in[g.n:])
		if n > 0 {
			g.n += n
			l.process(g)
			if n < room {
				return // short: the queue is empty; the next edge tells
			}
			continue
		}
		if err == syscall.EAGAIN {
			return
		}
		if err == syscall.EINTR {
			continue
		}
		// EOF or an error: the peer is done.
		g.eof = true
		l.close(g.s)
		return
	}
}

func (l *loop) process(g *leg) {
	s := g.s
	switch {
	case g == s.c && s.st == stRequest:
		l.request(s)
	case g == s.u && s.st == stAwait101:
		l.response(s)
	case s.st == stRelay:
		l.relay(g)
		l.flush(g.peer)
	}
}

// request parses the client's upgrade request once its head is in.
func (l *loop) request(s *session) {
	c := s.c
	end := bytes.Index(c.in[:c.n], []byte("\r\n\r\n"))
	if end < 0 {
		return
	}
	head := c.in[:end+4]
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		l.refuse(s, 400)
		return
	}
	r.RemoteAddr = "127.0.0.1:1"
	req, rej := handshake.Check(r)
	if rej != nil {
		l.refuse(s, rej.Status)
		return
	}
	s.key, s.target, s.host = req.Key, r.RequestURI, r.Host
	c.n = copy(c.in, c.in[end+4:c.n]) // pipelined frames wait for the relay
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		l.refuse(s, 503)
		return
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	u := &leg{fd: fd, s: s, in: make([]byte, bufSize), rules: frame.Rules{Sender: frame.FromServer, MaxPayload: maxFrame}}
	u.msg.MaxSize = maxFrame
	s.u, u.peer, c.peer = u, c, u
	l.legs[fd] = u
	if err := l.register(fd); err != nil {
		l.refuse(s, 502)
		return
	}
	s.st = stConnecting
	if err := syscall.Connect(fd, &l.backend); err != nil && err != syscall.EINPROGRESS {
		l.refuse(s, 502)
	}
	// EPOLLOUT says when the connect is over (writable).
}

func (l *loop) refuse(s *session, status int) {
	msg := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status, http.StatusText(status))
	_, _ = syscall.Write(s.c.fd, []byte(msg))
	l.close(s)
}

func (l *loop) writable(g *leg) {
	s := g.s
	if g == s.u && s.st == stConnecting {
		if v, err := syscall.GetsockoptInt(g.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || v != 0 {
			l.refuse(s, 502)
			return
		}
		var k [16]byte
		key := frame.NewKey()
		copy(k[:], key[:])
		key = frame.NewKey()
		copy(k[4:], key[:])
		key = frame.NewKey()
		copy(k[8:], key[:])
		key = frame.NewKey()
		copy(k[12:], key[:])
		s.upKey = base64.StdEncoding.EncodeToString(k[:])
		g.out = fmt.Appendf(g.out[:0], "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n", s.target, l.bhost, s.upKey)
		s.st = stAwait101
	}
	l.flush(g)
}

// response checks the upstream's 101 and answers the client with its own.
func (l *loop) response(s *session) {
	u := s.u
	end := bytes.Index(u.in[:u.n], []byte("\r\n\r\n"))
	if end < 0 {
		return
	}
	head := u.in[:end+4]
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) || !bytes.Contains(head, []byte(accept(s.upKey))) {
		l.refuse(s, 502)
		return
	}
	u.n = copy(u.in, u.in[end+4:u.n])
	c := s.c
	c.out = fmt.Appendf(c.out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept(s.key))
	s.st = stRelay
	// Frames that came with the 101, or before it from the client.
	l.relay(u)
	l.flush(c)
	l.relay(c)
	l.flush(u)
}

func accept(key string) string { return handshake.AcceptKey(key) }

// relay moves the complete headers and the payload bytes in g.in to the
// other leg's output, checking each frame.
func (l *loop) relay(g *leg) {
	o := g.peer
	p := 0
	for p < g.n && !g.s.closed {
		if g.rem > 0 {
			k := int(min(g.rem, int64(g.n-p)))
			b := g.in[p : p+k]
			if g.masked {
				g.inPos = frame.Mask(g.inKey, g.inPos, b)
			}
			if err := g.msg.Payload(b); err != nil {
				l.close(g.s)
				return
			}
			if g.toUp {
				g.outPos = frame.Mask(g.outKey, g.outPos, b)
			}
			o.out = append(o.out, b...)
			p += k
			g.rem -= int64(k)
			if g.rem == 0 {
				if g.msg.EndFrame() != nil {
					l.close(g.s)
					return
				}
			}
			continue
		}
		h, hn, err := frame.DecodeHeader(g.in[p:g.n], g.rules)
		if errors.Is(err, frame.ErrShortHeader) {
			break
		}
		if err == nil {
			err = g.msg.Next(h)
		}
		if err != nil {
			l.close(g.s)
			return
		}
		p += hn
		g.masked, g.inKey, g.inPos = h.Masked, h.Key, 0
		out := h
		if g.toUp {
			out.Masked, out.Key = true, frame.NewKey()
			g.outKey, g.outPos = out.Key, 0
		} else {
			out.Masked = false
		}
		var hb [frame.MaxHeaderSize]byte
		o.out = append(o.out, hb[:frame.PutHeader(hb[:], out)]...)
		g.rem = h.Length
		if h.Opcode == frame.OpClose {
			g.gotClose = true
			o.sentClose = true
		}
		if g.rem == 0 && g.msg.EndFrame() != nil {
			l.close(g.s)
			return
		}
	}
	g.n = copy(g.in, g.in[p:g.n])
}

// flush writes g's pending output; what the socket does not take waits
// for EPOLLOUT. Once both Closes have passed and are written, the session
// ends (the server side closes the TCP connection first).
func (l *loop) flush(g *leg) {
	for len(g.out) > 0 {
		n, err := syscall.Write(g.fd, g.out)
		if n > 0 {
			g.out = g.out[:copy(g.out, g.out[n:])]
			continue
		}
		if err == syscall.EAGAIN {
			return
		}
		if err == syscall.EINTR {
			continue
		}
		l.close(g.s)
		return
	}
	s := g.s
	if s.st == stRelay && s.c.gotClose && s.u.gotClose && len(s.c.out) == 0 && len(s.u.out) == 0 && s.c.rem == 0 && s.u.rem == 0 {
		l.close(s)
	}
}

func (l *loop) close(s *session) {
	if s.closed {
		return
	}
	s.closed = true
	for _, g := range []*leg{s.c, s.u} {
		if g != nil {
			delete(l.legs, g.fd)
			_ = syscall.Close(g.fd) // also leaves the epoll set
		}
	}
}

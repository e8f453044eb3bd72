package interop

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"wsgate/frame"
	"wsgate/handshake"
)

// The masked "Hello" of RFC 6455 §5.7 and its unmasked twin.
var (
	maskedHello   = []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}
	unmaskedHello = []byte{0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}
)

// readRawClose reads one frame byte by byte, without package frame, and
// expects a Close (RFC 6455 §5.5.1) masked or not as masked says (§5.1).
// It returns the close code.
func readRawClose(conn net.Conn, br *bufio.Reader, masked bool) (uint16, error) {
	_ = conn.SetReadDeadline(time.Now().Add(ioTimeout))
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, fmt.Errorf("reading the Close: %w", err)
	}
	if h[0] != 0x88 || (h[1]&0x80 != 0) != masked || h[1]&0x7f < 2 || h[1]&0x7f > 125 {
		return 0, fmt.Errorf("got header % x, want a final Close, masked=%v, with a code", h, masked)
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(br, key[:]); err != nil {
			return 0, err
		}
	}
	p := make([]byte, h[1]&0x7f)
	if _, err := io.ReadFull(br, p); err != nil {
		return 0, err
	}
	for i := range p {
		p[i] ^= key[i%4]
	}
	return binary.BigEndian.Uint16(p), nil
}

func expectRawEOF(conn net.Conn, br *bufio.Reader) error {
	_ = conn.SetReadDeadline(time.Now().Add(ioTimeout))
	if b, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("after the Close: byte %#x, %v; want EOF", b, err)
	}
	return nil
}

// TestOurServer_FailsUnmaskedFrame_RFC6455_5_1: a raw client that sends an
// unmasked frame after a valid handshake gets a Close with 1002 and the
// connection closed: "The server MUST close the connection upon receiving a
// frame that is not masked … a server MAY send a Close frame with a status
// code of 1002" (§5.1, §7.4.1). A masked frame on the same server is fine.
func TestOurServer_FailsUnmaskedFrame_RFC6455_5_1(t *testing.T) {
	t.Parallel()
	srv := startOurServer(t)
	u, _ := url.Parse(srv.url)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"masked", maskedHello},
		{"unmasked", unmaskedHello},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		up, err := (&handshake.Dialer{}).Dial(ctx, u, nil, nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		defer up.Conn.Close()
		if _, err := up.Conn.Write(tc.frame); err != nil {
			t.Fatal(err)
		}
		if tc.name == "masked" {
			// The echo, unmasked (§5.1: a server MUST NOT mask).
			want := unmaskedHello
			got := make([]byte, len(want))
			_ = up.Conn.SetReadDeadline(time.Now().Add(ioTimeout))
			if _, err := io.ReadFull(up.Reader, got); err != nil || string(got) != string(want) {
				t.Fatalf("echo of a masked frame: % x, %v; want % x", got, err, want)
			}
			_ = up.Conn.Close()
			srv.next(t).wait(t)
			continue
		}
		if code, err := readRawClose(up.Conn, up.Reader, false); err != nil || code != 1002 {
			t.Fatalf("close code %d, %v; want 1002", code, err)
		}
		if err := expectRawEOF(up.Conn, up.Reader); err != nil {
			t.Fatal(err)
		}
		sc := srv.next(t)
		sc.wait(t)
		if !errors.Is(sc.err, frame.ErrUnmasked) {
			t.Errorf("our server stopped with %v, want %v", sc.err, frame.ErrUnmasked)
		}
	}
}

// TestOurClient_FailsMaskedFrame_RFC6455_5_1: a raw server answers our
// Dialer's handshake and sends a masked frame in the same write, right
// behind the 101. Our client finds it in Upstream.Reader, fails it ("A
// client MUST close a connection if it detects a masked frame", §5.1) with
// a Close of 1002 that is itself masked (§5.3: every frame from a client),
// and closes the connection.
func TestOurClient_FailsMaskedFrame_RFC6455_5_1(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverSaw := make(chan uint16, 1)
	serverDone := make(chan struct{})
	go func() {
		defer close(serverDone)
		conn, err := ln.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(ioTimeout))
		br := bufio.NewReader(conn)
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Error(err)
			return
		}
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + handshake.AcceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
		if _, err := conn.Write(append([]byte(resp), maskedHello...)); err != nil {
			t.Error(err)
			return
		}
		code, err := readRawClose(conn, br, true)
		if err != nil {
			t.Error(err)
			return
		}
		serverSaw <- code
		if err := expectRawEOF(conn, br); err != nil {
			t.Error(err)
		}
	}()

	u, _ := url.Parse("ws://" + ln.Addr().String() + "/")
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	up, err := (&handshake.Dialer{}).Dial(ctx, u, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEndpoint(up.Conn, up.Reader, true)
	_, err = e.readMessage()
	if !errors.Is(err, frame.ErrMasked) {
		t.Fatalf("our client read %v, want %v", err, frame.ErrMasked)
	}
	if code, _ := frame.CodeOf(err); code != frame.CloseProtocolError {
		t.Fatalf("CodeOf = %d, want 1002", code)
	}
	e.fail(err)
	select {
	case code := <-serverSaw:
		if code != 1002 {
			t.Errorf("raw server got close code %d, want 1002", code)
		}
	case <-serverDone:
		t.Fatal("raw server got no Close")
	}
	<-serverDone
}

// TestOurServer_PipelinedFrame_RFC6455_4_2_2: a raw client writes its
// request and a masked frame in one write, without waiting for the 101
// (RFC 6455 §4.1 lets a client send once it has the 101, but nothing stops
// a peer from pipelining). The frame sits in the reader handshake.Upgrade
// returns, and comes back echoed right behind the 101.
func TestOurServer_PipelinedFrame_RFC6455_4_2_2(t *testing.T) {
	t.Parallel()
	srv := startOurServer(t)
	u, _ := url.Parse(srv.url)
	conn, err := net.DialTimeout("tcp", u.Host, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	const key = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455 §1.3
	req := "GET /echo HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), maskedHello...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("response %v, %v; want the 101 of §1.3", resp, err)
	}
	got := make([]byte, len(unmaskedHello))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != string(unmaskedHello) {
		t.Fatalf("echo % x, %v; want % x", got, err, unmaskedHello)
	}
	_ = conn.Close()
	got2, _ := srv.next(t).wait(t)
	sameLines(t, "frames our server read", got2, []string{"text 5 fin"})
}

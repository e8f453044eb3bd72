package handshake

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Errors of Dial and ReadResponse. Dial wraps them with context; test with
// errors.Is. The gateway answers all of them with 502.
var (
	// ErrBadURL: the upstream URL is not ws:// or wss:// with a host, or
	// its request target holds bytes that cannot go on a request line.
	ErrBadURL = errors.New("handshake: upstream URL must be ws:// or wss:// with a host")
	// ErrBadResponse: the answer is not a well-formed HTTP/1.x response
	// head (bad status line, bad header name, control characters…).
	ErrBadResponse = errors.New("handshake: malformed HTTP response")
	// ErrResponseTooLarge: the status line and headers exceed the bound.
	ErrResponseTooLarge = errors.New("handshake: response head too large")
	// ErrBadUpgrade: a 101 without "Upgrade: websocket" or without
	// "Connection: Upgrade" (RFC 6455 §4.1, client steps 2-3).
	ErrBadUpgrade = errors.New("handshake: 101 without Upgrade: websocket and Connection: Upgrade")
	// ErrBadAccept: Sec-WebSocket-Accept is missing, repeated or wrong
	// (RFC 6455 §4.1, client step 4).
	ErrBadAccept = errors.New("handshake: wrong Sec-WebSocket-Accept")
	// ErrBadProtocol: the upstream chose a subprotocol we did not offer,
	// or sent an invalid Sec-WebSocket-Protocol (RFC 6455 §4.1, step 6).
	ErrBadProtocol = errors.New("handshake: upstream chose a subprotocol that was not offered")
	// ErrBadExtension: the upstream answered with an extension we did not
	// offer, or with a permessage-deflate response that accepts none of our
	// offers (RFC 6455 §4.1 client step 5, RFC 7692 §7.1).
	ErrBadExtension = errors.New("handshake: upstream chose an extension that was not offered")
)

// StatusError is an upstream's non-101 answer (RFC 6455 §4.1, client
// step 1: "the client handles the response per HTTP procedures"). The
// gateway passes its status, some of its headers and its body on to the
// client.
type StatusError struct {
	StatusCode int
	Header     http.Header
	Body       []byte // at most Dialer.MaxBodyBytes
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("handshake: upstream answered %d %s instead of 101", e.StatusCode, http.StatusText(e.StatusCode))
}

// Dialer opens WebSocket connections to upstreams. The zero value (and a
// nil *Dialer) is ready to use.
type Dialer struct {
	// TLSConfig is used for wss://. It is cloned per dial; NextProtos is
	// forced to ["http/1.1"] because the WebSocket handshake of RFC 6455
	// is HTTP/1.1 only (an upstream that picked h2 would not understand
	// it), and ServerName defaults to the URL's host (RFC 6455 §4.1: SNI
	// is a MUST).
	TLSConfig *tls.Config
	// NetDialContext opens the TCP connection; nil means
	// (&net.Dialer{}).DialContext. It lets the gateway plug in an
	// in-process upstream.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Rand is the source of the 16-byte Sec-WebSocket-Key; nil means
	// crypto/rand. RFC 6455 §4.1 item 7 wants a fresh random nonce per
	// connection; tests inject a known source.
	Rand io.Reader
	// MaxResponseBytes bounds the response's status line and headers;
	// 0 means DefaultMaxResponseBytes (16 KiB).
	MaxResponseBytes int
	// MaxBodyBytes bounds the body kept from a non-101 answer; 0 means
	// DefaultMaxBodyBytes (1 KiB).
	MaxBodyBytes int
}

// Upstream is an established connection to an upstream.
type Upstream struct {
	Conn net.Conn
	// Reader wraps Conn and must be used for reading: it holds any bytes
	// the upstream sent right after its 101. Once Reader.Buffered() is 0,
	// reading Conn directly is equivalent.
	Reader *bufio.Reader
	// Protocol is the subprotocol the upstream chose, "" if none.
	Protocol string
	// Header is the 101's header; the gateway copies Set-Cookie from it.
	Header http.Header
	// Deflate is the permessage-deflate response the upstream accepted an
	// offer with, when DeflateOn (DialDeflate; deflate.go).
	Deflate   Deflate
	DeflateOn bool
}

// readBufferSize is the size of Upstream.Reader's buffer.
const readBufferSize = 4096

// Dial opens a WebSocket connection to u (RFC 6455 §4.1).
//
// u is ws:// or wss:// (default ports 80 and 443) with the final path and
// RawQuery; the request line is "GET <path>?<query> HTTP/1.1" and Host is
// u's host without a default port. Dial sends Upgrade, Connection, a fresh
// Sec-WebSocket-Key, Sec-WebSocket-Version: 13, Sec-WebSocket-Protocol when
// protocols is not empty, and header. The caller has already chosen the
// end-to-end headers to forward; Dial still drops from header any Host,
// hop-by-hop or framing header (Connection, Upgrade, Keep-Alive, Proxy-*,
// TE, Trailer, Transfer-Encoding, Content-Length) and every Sec-WebSocket-*,
// so no client's key, version or extension offer ever reaches the upstream.
//
// ctx bounds the whole dial: TCP connect, TLS and handshake. Give it a
// deadline: an upstream that accepts and never answers would otherwise
// hold Dial until ctx is cancelled. The deadline put on the connection for
// this is cleared before Dial returns.
//
// Dial then verifies the answer: a 101 with Upgrade: websocket,
// Connection: Upgrade, the right Sec-WebSocket-Accept, a subprotocol from
// protocols or none, and no Sec-WebSocket-Extensions. A non-101 is
// returned as *StatusError. On every error the connection is closed.
//
// Errors wrap their cause, so the gateway can classify them:
// errors.Is(err, context.DeadlineExceeded) or a net.Error whose Timeout()
// is true for a timeout; errors.Is(err, syscall.EMFILE) or ENFILE for
// descriptor exhaustion; anything else is a failed upstream.
func (d *Dialer) Dial(ctx context.Context, u *url.URL, header http.Header, protocols []string) (*Upstream, error) {
	return d.DialDeflate(ctx, u, header, protocols, nil)
}

// DialDeflate is Dial with a permessage-deflate offer (nil: none, as
// Dial). The offer goes out as Sec-WebSocket-Extensions, and the 101 may
// then carry one permessage-deflate response that accepts one of its
// offers (DeflateOffer.Accept); anything else fails with ErrBadExtension.
// The accepted response is Upstream.Deflate.
func (d *Dialer) DialDeflate(ctx context.Context, u *url.URL, header http.Header, protocols []string, offer *DeflateOffer) (*Upstream, error) {
	if d == nil {
		d = &Dialer{}
	}
	t, err := parseTarget(u)
	if err != nil {
		return nil, err
	}
	for _, p := range protocols {
		if !validToken(p) {
			return nil, fmt.Errorf("handshake: invalid subprotocol offer %q", p)
		}
	}
	sc := scratchPool.Get().(*dialScratch)
	defer sc.release()
	rnd := d.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	if _, err := io.ReadFull(rnd, sc.raw[:]); err != nil {
		return nil, fmt.Errorf("handshake: generate key: %w", err)
	}
	base64.StdEncoding.Encode(sc.key[:], sc.raw[:])
	sc.req = appendRequest(sc.req[:0], t, sc.key[:], protocols, header)
	if offer != nil && len(offer.Offers) > 0 {
		// Before the blank line that ends the head.
		sc.req = sc.req[:len(sc.req)-2]
		sc.req = append(sc.req, "Sec-WebSocket-Extensions: "...)
		sc.req = append(sc.req, offer.String()...)
		sc.req = append(sc.req, "\r\n\r\n"...)
	}

	conn, err := d.dial(ctx, t.addr)
	if err != nil {
		return nil, wrapErr(ctx, "dial "+t.addr, err)
	}

	// The connection's deadline follows ctx: its deadline directly, its
	// cancellation through AfterFunc (the way net/http's client does it).
	// Set the deadline first so a cancellation that fires at once is not
	// overwritten by it.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })

	up, err := d.handshake(ctx, conn, t, sc.req, &sc.key, protocols, offer)
	if !stop() && err == nil {
		// ctx ended just as the handshake finished: the deadline may have
		// been set to the past under us, so the connection is not usable.
		err = wrapErr(ctx, "handshake", context.Cause(ctx))
	}
	if err == nil {
		if derr := up.Conn.SetDeadline(time.Time{}); derr != nil {
			err = wrapErr(ctx, "clear deadline", derr)
		}
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return up, nil
}

// dialScratch is what one Dial needs only until it returns: the raw and
// encoded key and the request. Pooled, because every handshake needs them and
// they escape (the key through Rand, the request through conn.Write).
type dialScratch struct {
	raw [16]byte
	key [24]byte // base64 of raw: Sec-WebSocket-Key
	req []byte
}

// maxPooledRequest bounds the request buffers the pool keeps: a request
// with unusually large forwarded headers is not kept alive for the next.
const maxPooledRequest = 8 << 10

var scratchPool = sync.Pool{New: func() any { return &dialScratch{req: make([]byte, 0, 1024)} }}

func (sc *dialScratch) release() {
	if cap(sc.req) > maxPooledRequest {
		sc.req = make([]byte, 0, 1024)
	}
	scratchPool.Put(sc)
}

// netDialer dials upstreams when Dialer.NetDialContext is nil.
//
// Not net.Dialer.DialTCP, which would skip name resolution for an address
// literal: given no local address it still binds the socket to port 0
// (one more system call, and an ephemeral port reserved for every
// destination instead of shared between them).
//
// Without TCP keepalive: the gateway's own pings (ping_interval) find a
// dead peer, and Go's default keepalive costs four setsockopt calls per
// connection (docs/relay.md "Keepalive pings and pong_timeout").
var netDialer = net.Dialer{KeepAlive: -1}

// dial opens the TCP connection to addr.
func (d *Dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	if d.NetDialContext != nil {
		return d.NetDialContext(ctx, "tcp", addr)
	}
	return netDialer.DialContext(ctx, "tcp", addr)
}

// aLongTimeAgo is a deadline in the past, which makes pending I/O fail now.
var aLongTimeAgo = time.Unix(1, 0)

func (d *Dialer) handshake(ctx context.Context, conn net.Conn, t target, req []byte, key *[24]byte, protocols []string, offer *DeflateOffer) (*Upstream, error) {
	if t.secure {
		cfg := &tls.Config{}
		if d.TLSConfig != nil {
			cfg = d.TLSConfig.Clone()
		}
		cfg.NextProtos = []string{"http/1.1"}
		if cfg.ServerName == "" {
			cfg.ServerName = t.hostname
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, wrapErr(ctx, "tls handshake", err)
		}
		conn = tc
	}
	if _, err := conn.Write(req); err != nil {
		return nil, wrapErr(ctx, "write request", err)
	}
	br := bufio.NewReaderSize(conn, readBufferSize)
	resp, err := ReadResponse(br, d.MaxResponseBytes, d.MaxBodyBytes)
	if err != nil {
		return nil, wrapErr(ctx, "read response", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, &StatusError{StatusCode: resp.StatusCode, Header: resp.Header, Body: resp.Body}
	}
	protocol, err := verify101(resp.Header, key, protocols, offer)
	if err != nil {
		return nil, err
	}
	up := &Upstream{Conn: conn, Reader: br, Protocol: protocol, Header: resp.Header}
	if offer != nil && len(offer.Offers) > 0 {
		if up.Deflate, up.DeflateOn, err = offer.Accept(resp.Header["Sec-Websocket-Extensions"]); err != nil {
			return nil, err
		}
	}
	return up, nil
}

// verify101 makes the client-side checks of RFC 6455 §4.1 on a 101's
// header and returns the chosen subprotocol. key is the Sec-WebSocket-Key we
// sent.
func verify101(h http.Header, key *[24]byte, protocols []string, offer *DeflateOffer) (string, error) {
	// Steps 2-3: "If the response lacks an |Upgrade| header field or the
	// |Upgrade| header field contains a value that is not an ASCII
	// case-insensitive match for the value "websocket" ... If the response
	// lacks a |Connection| header field or the |Connection| header field
	// doesn't contain a token that is an ASCII case-insensitive match for
	// the value "Upgrade", the client MUST _Fail the WebSocket Connection_."
	if !hasToken(h["Upgrade"], "websocket") {
		return "", fmt.Errorf("%w (Upgrade: %q)", ErrBadUpgrade, h["Upgrade"])
	}
	if !hasToken(h["Connection"], "upgrade") {
		return "", fmt.Errorf("%w (Connection: %q)", ErrBadUpgrade, h["Connection"])
	}
	// Step 4: the accept must be the hash of the key we sent. Exactly one
	// field: two could disagree, and a repeated field is not one value.
	var want [28]byte
	if acc := h["Sec-Websocket-Accept"]; len(acc) != 1 || acc[0] != string(appendAccept(want[:0], key[:])) {
		return "", fmt.Errorf("%w (got %q)", ErrBadAccept, acc)
	}
	// Step 5: without an offer, any extension is one "not present in the
	// client's handshake". With one, DeflateOffer.Accept checks it.
	for _, v := range h["Sec-Websocket-Extensions"] {
		if offer != nil && len(offer.Offers) > 0 {
			break
		}
		if trimOWS(strings.ReplaceAll(v, ",", "")) != "" {
			return "", fmt.Errorf("%w (%q)", ErrBadExtension, v)
		}
	}
	// Step 6: the subprotocol must be one we offered. §4.2.2: the server
	// selects "a single value"; the empty string is not a legal value.
	switch p := h["Sec-Websocket-Protocol"]; {
	case len(p) == 0:
		return "", nil
	case len(p) == 1 && contains(protocols, p[0]):
		return p[0], nil
	default:
		return "", fmt.Errorf("%w (got %q, offered %q)", ErrBadProtocol, p, protocols)
	}
}

// wrapErr adds op to err and, when ctx has ended (or its deadline has just
// passed, before its timer fired), ctx's error too, so that
// errors.Is(err, context.DeadlineExceeded) holds for a timeout however the
// I/O call noticed it. Both causes stay reachable for errors.Is/As.
func wrapErr(ctx context.Context, op string, err error) error {
	cerr := ctx.Err()
	if cerr == nil {
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			cerr = context.DeadlineExceeded
		}
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("handshake: %s: %w: %w", op, cerr, err)
	}
	return fmt.Errorf("handshake: %s: %w", op, err)
}

// target is what Dial derives from the upstream URL.
type target struct {
	secure     bool
	hostname   string // without brackets or port, for TLS ServerName
	addr       string // host:port to dial
	hostHeader string // Host value: no default port (RFC 6455 §4.1 item 4)
	requestURI string
}

// parseTarget reads a ws:// or wss:// URL (RFC 6455 §3).
func parseTarget(u *url.URL) (target, error) {
	if u == nil {
		return target{}, ErrBadURL
	}
	var t target
	var defPort string
	switch strings.ToLower(u.Scheme) {
	case "ws":
		defPort = "80"
	case "wss":
		t.secure, defPort = true, "443"
	default:
		return target{}, fmt.Errorf("%w (scheme %q)", ErrBadURL, u.Scheme)
	}
	t.hostname = u.Hostname()
	if t.hostname == "" {
		return target{}, fmt.Errorf("%w (no host in %q)", ErrBadURL, u.Redacted())
	}
	port := u.Port()
	if port == "" {
		port = defPort
	}
	t.addr = net.JoinHostPort(t.hostname, port)
	if port == defPort {
		t.hostHeader = t.hostname
		if strings.IndexByte(t.hostname, ':') >= 0 {
			t.hostHeader = "[" + t.hostname + "]"
		}
	} else {
		t.hostHeader = t.addr
	}
	// §3: the resource name is the path ("/" if empty) and "?" query; a
	// fragment is meaningless and never sent. RequestURI escapes the path;
	// RawQuery is used as given, so check it cannot break the request line.
	t.requestURI = u.RequestURI()
	if !strings.HasPrefix(t.requestURI, "/") || !printable(t.requestURI) || !printable(t.hostHeader) {
		return target{}, fmt.Errorf("%w (bad request target)", ErrBadURL)
	}
	return t, nil
}

// printable reports whether s has no space, control or non-ASCII byte.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// dropOnDial reports whether a caller-supplied header must not be sent
// upstream: Host is ours to write, hop-by-hop headers belong to the
// client's connection, and the Sec-WebSocket-* fields belong to the
// client's own handshake (we send our own key and version, our filtered
// protocol offer, and never an extension offer).
func dropOnDial(name string) bool {
	return strings.EqualFold(name, "Host") || isHopByHop(name) || hasPrefixFold(name, "Sec-WebSocket-")
}

// appendRequest appends the client's opening handshake (RFC 6455 §4.1).
func appendRequest(dst []byte, t target, key []byte, protocols []string, header http.Header) []byte {
	dst = append(dst, "GET "...)
	dst = append(dst, t.requestURI...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, t.hostHeader...)
	dst = append(dst, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	dst = append(dst, key...)
	dst = append(dst, "\r\nSec-WebSocket-Version: 13\r\n"...)
	if len(protocols) > 0 {
		dst = append(dst, "Sec-WebSocket-Protocol: "...)
		for i, p := range protocols {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = append(dst, p...)
		}
		dst = append(dst, "\r\n"...)
	}
	dst = appendHeader(dst, header, dropOnDial)
	return append(dst, "\r\n"...)
}

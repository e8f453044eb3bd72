package listen

// The WebSocket listeners' defences against slow and oversized handshakes
// (docs/handshake.md "At the listener"), and the PROXY
// protocol:
//
//   - server.proxy_protocol: every connection must open with a PROXY v1 or v2
//     header (github.com/pires/go-proxyproto parses it); its source address
//     becomes the connection's remote address, so net/http, the limits, the
//     logs and X-Forwarded-For all see the client, not the load balancer. A
//     connection without a valid header is closed. The header is read on the
//     connection's own goroutine, never in Accept, so a silent peer cannot
//     stall the accept loop.
//   - server.handshake_timeout bounds the whole request, from accept (PROXY
//     header and TLS handshake included) until net/http has read it; a
//     keep-alive connection waiting for its next request gets the same time
//     again. net/http's ReadHeaderTimeout alone starts only when the request
//     starts, and leaves idle keep-alive connections open for ever.
//   - server.max_pending_per_ip: a connection counts as pending from accept
//     until it is upgraded (hijacked) or closed; over the cap, it is closed
//     at once. Peers in trusted_proxies are not counted: their clients are
//     only known from the request's headers.
//   - server.max_header_bytes: see HTTPMaxHeaderBytes.
//
// Closed connections are logged and counted with route="": status 408 for a
// timed-out handshake and 429 for max_pending_per_ip (nothing is sent on the
// wire for either: the connection is just closed, as nginx does for 408).

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"

	"wsgate/internal/config"
	"wsgate/ratelimit"
)

// HTTPHeaderSlop is what net/http adds to http.Server.MaxHeaderBytes before
// it answers 431: its limit is on the bytes read for the request head,
// MaxHeaderBytes + 4096 ("bufio slop", net/http's initialReadLimitSize).
const HTTPHeaderSlop = 4096

// HTTPMaxHeaderBytes is the http.Server.MaxHeaderBytes that makes net/http
// answer 431 for a request head (request line, headers, blank line) of more
// than max bytes. net/http cannot go below 4097; a smaller max is checked by
// the gateway's handler (ServeHTTP), from the parsed request.
func HTTPMaxHeaderBytes(limit config.Size) int {
	return int(max(int64(limit)-HTTPHeaderSlop, 1))
}

// Gate is what one gateway's listeners share: the count of unfinished
// handshakes per address, the log, the rejection callback and the
// rate-limited "out of file descriptors" lines. Its zero value is not
// usable: set Log and Rejected.
type Gate struct {
	Log zerolog.Logger
	// Rejected logs and counts a connection refused before any route was
	// matched (route="").
	Rejected func(client netip.Addr, peer string, status int, reason string)
	// Pending counts unfinished handshakes per address (max_pending_per_ip).
	Pending ratelimit.Counter
	fdLog   fdAlarms
}

// Wrap wraps a WebSocket listener (plain or TLS: for TLS, it sits under the
// TLS layer) with the PROXY protocol, handshake_timeout and
// max_pending_per_ip, and its accept with a back-off for when the process is
// out of descriptors (Paced). The http.Server serving it must use
// ConnState.
//
// underTLS says the listener sits under TLS: net/http's own answers are
// then encrypted before they reach the connection, so they are recognised
// from the connection's life instead (see tlsRefusal), and the http.Server
// must also use ConnContext so that Handled can mark the requests the
// gateway's handler answered.
func (g *Gate) Wrap(ln net.Listener, srv config.ServerConfig, underTLS bool) net.Listener {
	return &gateListener{Listener: g.paced(ln), g: g, proxy: srv.ProxyProtocol, timeout: srv.HandshakeTimeout,
		maxPending: srv.MaxPendingPerIP, trusted: srv.TrustedProxies, tls: underTLS,
		refusalRead: int64(HTTPMaxHeaderBytes(srv.MaxHeaderBytes)) + HTTPHeaderSlop}
}

type gateListener struct {
	net.Listener
	g           *Gate
	proxy       bool
	timeout     time.Duration
	maxPending  int
	trusted     []netip.Prefix
	tls         bool  // under TLS: count bytes to recognise net/http's answers
	refusalRead int64 // read past this in one request: net/http answers 431
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &gateConn{Conn: raw, raw: raw, l: l}
		if l.proxy {
			// REQUIRE: a connection must open with a header (the PROXY
			// spec: a receiver "MUST not try to guess"). Read on first
			// use, on net/http's goroutine for this connection.
			c.Conn = proxyproto.NewConn(raw, proxyproto.WithPolicy(proxyproto.REQUIRE),
				proxyproto.SetReadHeaderTimeout(l.timeout))
		} else {
			if !c.admit(AddrOf(raw.RemoteAddr())) {
				raw.Close()
				continue
			}
			c.resolved.Store(true)
		}
		if l.timeout > 0 {
			c.timer = time.AfterFunc(l.timeout, c.expire)
		}
		return c, nil
	}
}

// phase of a connection, for handshake_timeout.
type connPhase uint8

const (
	phaseWaiting connPhase = iota // a request has yet to arrive (timer running)
	phaseActive                   // net/http has read a request and is answering it
	phaseDone                     // hijacked, closed, or timed out
)

// gateConn is a WebSocket listener's connection. After an upgrade it is the
// session's client connection, so its Read and Write stay thin.
type gateConn struct {
	net.Conn          // raw, or the PROXY protocol reader over it
	raw      net.Conn // the TCP connection
	l        *gateListener

	resolved atomic.Bool // the client address is known and admitted
	upgraded atomic.Bool // hijacked: the session's client connection now
	once     sync.Once
	err      error // why the connection was refused (PROXY header, pending)

	// Under TLS only, until the upgrade: bytes read and written, the bytes
	// read when the current request began (TLS handshake included for the
	// first) and written when net/http had read it, and whether the
	// gateway's handler took that request.
	nread, nwritten     atomic.Int64
	reqRead, reqWritten int64 // under mu
	inRequest           bool  // under mu: a request began (StateActive, or StateIdle after an answer)
	expired             bool  // under mu: handshake_timeout closed it (logged as 408)
	handled             atomic.Bool
	// served: the connection carries proxied HTTP requests (Served): it
	// holds no pending slot, and handshake_timeout, which still closes it
	// when it sits idle between requests, does so without a 408 line.
	served bool // under mu

	mu      sync.Mutex
	phase   connPhase
	timer   *time.Timer
	key     netip.Addr // pending counter key
	counted bool       // key holds a pending slot
	client  netip.Addr
}

// admit counts the connection from client as pending, unless its address
// already has max_pending_per_ip. It reports whether it may go on.
func (c *gateConn) admit(client netip.Addr) bool {
	c.mu.Lock()
	c.client = client
	c.mu.Unlock()
	l := c.l
	if l.maxPending <= 0 || !client.IsValid() || Trusted(client, l.trusted) {
		return true
	}
	key := ratelimit.Key(client)
	if !l.g.Pending.Acquire(key, l.maxPending) {
		c.rejected(client, 429, "too many unfinished handshakes from this address (max_pending_per_ip): connection closed")
		return false
	}
	c.mu.Lock()
	c.key, c.counted = key, true
	c.mu.Unlock()
	return true
}

// resolve reads the PROXY header (once) and admits the client it names.
func (c *gateConn) resolve() error {
	c.once.Do(func() {
		pc := c.Conn.(*proxyproto.Conn)
		// A zero-length read runs the header parser and consumes nothing.
		if _, err := pc.Read(nil); err != nil {
			c.l.g.Log.Warn().Str("event", "proxy_protocol").Str("peer", c.raw.RemoteAddr().String()).Err(err).
				Msg("missing or invalid PROXY protocol header: connection closed")
			c.err = io.EOF
		} else {
			client := AddrOf(c.raw.RemoteAddr())
			if h := pc.ProxyHeader(); h != nil && !h.Command.IsLocal() {
				if a := AddrOf(pc.RemoteAddr()); a.IsValid() {
					client = a
				}
			}
			if !c.admit(client) {
				c.err = io.EOF
			}
		}
		if c.err != nil {
			c.finish()
			c.raw.Close()
		}
		c.resolved.Store(true)
	})
	return c.err
}

func (c *gateConn) Read(b []byte) (int, error) {
	if !c.resolved.Load() {
		if err := c.resolve(); err != nil {
			// io.EOF: net/http closes without answering.
			return 0, err
		}
	}
	n, err := c.Conn.Read(b)
	if c.l.tls && !c.upgraded.Load() {
		c.nread.Add(int64(n))
	}
	return n, err
}

// RemoteAddr is the client's address: with the PROXY protocol, the header's
// (net/http asks for it first thing, on the connection's goroutine).
func (c *gateConn) RemoteAddr() net.Addr {
	if !c.resolved.Load() {
		_ = c.resolve()
	}
	return c.Conn.RemoteAddr()
}

// CloseWrite half-closes the TCP connection: the session's lingering close
// needs it (leg.closeWrite).
func (c *gateConn) CloseWrite() error {
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// NetConn is the TCP connection under the wrappers: the relay parks on its
// descriptor and closes it directly when a leg is gone.
func (c *gateConn) NetConn() net.Conn { return c.raw }

// Upgraded is the connection a session should keep once conn, hijacked
// from net/http, has been upgraded: the TCP connection itself when conn is
// the listener's wrapper straight over it (no PROXY protocol reader in
// between). After the upgrade the wrapper has nothing left to do — its
// handshake_timeout timer and pending slot are released at the hijack,
// and it counts bytes only under TLS, where conn is the *tls.Conn — so
// the session does not keep it alive, nor pay its indirection on every
// read and write. Any other conn is returned as it is.
func Upgraded(conn net.Conn) net.Conn {
	if c, ok := conn.(*gateConn); ok && c.Conn == c.raw && c.upgraded.Load() {
		return c.raw
	}
	return conn
}

func (c *gateConn) Close() error {
	c.finish()
	return c.Conn.Close()
}

// active: net/http has read a request (or failed to): the timer stops.
func (c *gateConn) active() {
	c.mu.Lock()
	if c.phase == phaseWaiting {
		c.phase = phaseActive
		if c.timer != nil {
			c.timer.Stop()
		}
	}
	c.mu.Unlock()
}

// idle: a keep-alive connection waits for its next request, which must
// arrive within handshake_timeout too.
func (c *gateConn) idle() {
	c.mu.Lock()
	if c.phase == phaseActive {
		c.phase = phaseWaiting
		if c.timer != nil {
			c.timer.Reset(c.l.timeout)
		}
	}
	c.mu.Unlock()
}

// finish: the handshake is over (upgraded, or the connection closed).
func (c *gateConn) finish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.phase = phaseDone
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil // done with: not kept for the session's lifetime
	}
	if c.counted {
		c.counted = false
		c.l.g.Pending.Release(c.key)
	}
}

// expire runs when handshake_timeout passes with no complete request.
func (c *gateConn) expire() {
	c.mu.Lock()
	if c.phase != phaseWaiting {
		c.mu.Unlock()
		return
	}
	c.phase, c.expired = phaseDone, true
	if c.counted {
		c.counted = false
		c.l.g.Pending.Release(c.key)
	}
	client, served := c.client, c.served
	c.mu.Unlock()
	if !served {
		c.rejected(client, 408, "request not complete within handshake_timeout: connection closed")
	}
	c.raw.Close()
}

// rejected logs and counts a handshake refused before any route was
// matched (route="").
func (c *gateConn) rejected(client netip.Addr, status int, reason string) {
	c.l.g.Rejected(client, c.raw.RemoteAddr().String(), status, reason)
}

// Write is the connection's Write. Before the upgrade it also notices the
// answers net/http writes on its own, without calling the gateway's
// handler, to requests it cannot parse (see httpRefusal), so that they are
// logged and counted like every other rejected handshake. After the
// upgrade it is one atomic load more than the TCP connection's.
func (c *gateConn) Write(b []byte) (int, error) {
	if !c.upgraded.Load() {
		if status, reason, ok := httpRefusal(b); ok {
			c.mu.Lock()
			client, expired := c.client, c.phase == phaseDone
			c.mu.Unlock()
			if !expired { // else logged as 408 already
				c.rejected(client, status, reason)
			}
		}
	}
	n, err := c.Conn.Write(b)
	if c.l.tls && !c.upgraded.Load() {
		c.nwritten.Add(int64(n))
	}
	return n, err
}

// tlsRefusal recognises, when a connection under TLS closes, that net/http
// answered its last request by itself (a request it could not parse): since
// the request began (net/http's StateActive for the first request, the end
// of the previous answer, StateIdle, for the next ones), the gateway's
// handler took no request and more went out than the close_notify alert
// that closing sends. The answer itself is encrypted, so its status is
// inferred: 431 when the request read past max_header_bytes (net/http's
// limit), else 400 (net/http's 501 and 505, for an unknown transfer coding
// or HTTP version, are counted as 400 too).
func (c *gateConn) tlsRefusal() {
	c.mu.Lock()
	began, expired, r0, w0, client := c.inRequest, c.expired, c.reqRead, c.reqWritten, c.client
	c.mu.Unlock()
	if !began || expired || c.handled.Load() || c.nwritten.Load()-w0 <= closeNotifyMax {
		return
	}
	if c.nread.Load()-r0 >= c.l.refusalRead {
		c.rejected(client, http.StatusRequestHeaderFieldsTooLarge, "request headers larger than max_header_bytes (over TLS): connection closed")
		return
	}
	c.rejected(client, http.StatusBadRequest, "malformed request (over TLS; net/http answered it): connection closed")
}

// closeNotifyMax bounds the bytes of a TLS close_notify record (24 in TLS
// 1.3, 31 in TLS 1.2 with AES-GCM); net/http's shortest answer of its own
// is over 100 bytes before encryption.
const closeNotifyMax = 64

// connKey is the context key of ConnContext.
type connKey struct{}

// ConnContext is the WebSocket servers' http.Server.ConnContext hook: it
// lets Handled and Served find the connection of a request.
func ConnContext(ctx context.Context, nc net.Conn) context.Context {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if c, ok := nc.(*gateConn); ok {
		return context.WithValue(ctx, connKey{}, c)
	}
	return ctx
}

// Handled marks the request of ctx as taken by the gateway's handler, which
// logs and counts its own answers: the connection's end is then not taken
// for a refusal by net/http.
func Handled(ctx context.Context) {
	// (ConnContext puts the connection in every server's requests, TLS or
	// not: Served needs it on the plain listener too.)
	if c, ok := ctx.Value(connKey{}).(*gateConn); ok && c.l.tls {
		c.handled.Store(true)
	}
}

// Served marks the connection of ctx as one that carries proxied HTTP
// requests rather than a handshake: it gives back its max_pending_per_ip
// slot (an HTTP/1.1 keep-alive or HTTP/2 connection may live long), and
// handshake_timeout, which still closes it once it sits idle that long
// between requests, does so silently: an idle keep-alive connection is no
// incomplete request.
func Served(ctx context.Context) {
	c, ok := ctx.Value(connKey{}).(*gateConn)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.served = true
	if c.counted {
		c.counted = false
		c.l.g.Pending.Release(c.key)
	}
}

// netHTTPErrorHeaders are the headers of every answer net/http writes by
// itself when it cannot read a request (net/http's conn.serve: too large a
// head, a malformed request line or header, an unsupported transfer
// encoding or version). A response written through an http.ResponseWriter
// never has them in this order: it sorts its headers (Connection before
// Content-Type) and adds Date and Content-Length.
const netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// httpRefusal recognises such an answer in b and returns its status and a
// reason for the log: net/http's own text, which names what was wrong
// without echoing the request.
func httpRefusal(b []byte) (status int, reason string, ok bool) {
	const prefix = "HTTP/1.1 "
	if len(b) < len(prefix)+3 || string(b[:len(prefix)]) != prefix {
		return 0, "", false
	}
	// The headers follow the status line at once: anywhere else, they
	// could be an upstream's body that the gateway passes on.
	i := bytes.Index(b, []byte(netHTTPErrorHeaders))
	if i < 0 || bytes.IndexByte(b[:i], '\n') >= 0 || bytes.IndexByte(b[:i], '\r') >= 0 {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(b[len(prefix) : len(prefix)+3]))
	if err != nil || status < 400 || status > 599 {
		return 0, "", false
	}
	body := string(b[i+len(netHTTPErrorHeaders):])
	if status == http.StatusRequestHeaderFieldsTooLarge {
		return status, "request headers larger than max_header_bytes: connection closed", true
	}
	return status, "malformed request (" + strings.ToValidUTF8(body, "?") + "): connection closed", true
}

var (
	_ net.Conn     = (*gateConn)(nil)
	_ net.Listener = (*gateListener)(nil)
)

// ConnState is the WebSocket servers' http.Server.ConnState hook.
func ConnState(nc net.Conn, st http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*gateConn)
	if !ok {
		return
	}
	switch st {
	case http.StateActive:
		if c.l.tls {
			// net/http reports Active once it has read the request
			// (or failed to): what is written from now on answers it.
			c.mu.Lock()
			c.reqWritten, c.inRequest = c.nwritten.Load(), true
			c.mu.Unlock()
			c.handled.Store(false)
		}
		c.active()
	case http.StateIdle:
		if c.l.tls {
			// The answer is out: the next request's bytes start here
			// (net/http may not report StateActive for it when it
			// fails to read it).
			c.mu.Lock()
			c.reqRead, c.reqWritten, c.inRequest = c.nread.Load(), c.nwritten.Load(), true
			c.mu.Unlock()
			c.handled.Store(false)
		}
		c.idle()
	case http.StateHijacked:
		c.upgraded.Store(true)
		c.finish()
	case http.StateClosed:
		if c.l.tls {
			c.tlsRefusal()
		}
		c.finish()
	}
}

// AddrOf is the IP address of a TCP address, or the zero Addr.
func AddrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Trusted reports whether a is in one of proxies (server.trusted_proxies).
func Trusted(a netip.Addr, proxies []netip.Prefix) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

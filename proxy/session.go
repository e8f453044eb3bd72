package proxy

import (
	"bytes"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"wsgate/frame"
)

// smallFrame is the largest frame validated whole before it is forwarded
// (SPEC "The relay"): a violation inside it can still be answered with a
// clean close on the other side. Larger frames stream through.
const smallFrame = 16 << 10

// bufPool holds relay buffers: header room, then smallFrame bytes of payload.
// A pump takes one only while a payload is in flight, so an idle session
// holds none.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, frame.MaxHeaderSize+smallFrame)
	return &b
}}

// sessionConfig is what a session needs from its route's config snapshot.
type sessionConfig struct {
	pingInterval, pongTimeout, idleTimeout time.Duration
	closeTimeout, writeTimeout             time.Duration
	maxFrame, maxMessage                   int64
	failureCode, shutdownCode              frame.CloseCode
}

// session relays one client connection and its upstream connection. It owns
// both legs and all relay state; two pumps (one per direction, the first
// running on the handler's goroutine) move frames, and whichever sees the
// first terminal event decides the close frames both sides get.
type session struct {
	cfg      sessionConfig
	start    time.Time
	route    string
	client   string // client address
	upstream string // the upstream's configured URL
	protocol string
	backend  *Backend
	lim      *sessionLimits // the client's rate limits; nil: none
	hooks    *relayHooks    // tests only; nil otherwise

	c, u     leg
	lastData atomic.Int64 // since start: last data frame in either direction
	pumps    atomic.Int32 // pumps not finished yet
	onEnd    func()       // called once both pumps have finished

	// emu serialises close decisions: which Close each leg gets is decided
	// and sent under it, so two terminal events (or an event and a peer's
	// Close) never interleave half-way. It is taken before a leg's wmu,
	// never while holding one.
	emu sync.Mutex

	// owed is the Close the client is owed after a protocol error of its
	// own (evClientProtocol, evClientBadData), held back until the upstream
	// answered the 1001 it was sent first, or ended: data the upstream sent
	// before it saw our Close still reaches the client, as it would from a
	// server without a gateway in front (README "Close translation").
	// Guarded by emu; owing is set with it, for the client's pump.
	owed    frame.CloseCode
	owedWhy string
	owing   atomic.Bool

	mu        sync.Mutex
	why       string
	closedBy  string
	truncated bool
}

// relayHooks are points where a test can stall the relay to make a race
// between the two pumps happen every time. Each is called only on a close
// path, never per frame.
type relayHooks struct {
	// closeRelayed runs on src's pump after it relayed src's Close to the
	// other side, before it looks at the session again.
	closeRelayed func(src side)
	// closeWrite runs just before a Close frame is written to l, after
	// the leg was marked as closing.
	closeWrite func(l side)
}

func newSession(cfg sessionConfig) *session {
	s := &session{cfg: cfg, start: time.Now()}
	s.c.side, s.u.side = sideClient, sideUpstream
	s.c.s, s.u.s = s, s
	s.c.rules = frame.Rules{Sender: frame.FromClient, MaxPayload: cfg.maxFrame}
	s.u.rules = frame.Rules{Sender: frame.FromServer, MaxPayload: cfg.maxFrame}
	s.c.msg.MaxSize, s.u.msg.MaxSize = cfg.maxMessage, cfg.maxMessage
	k1, k2, k3, k4 := frame.NewKey(), frame.NewKey(), frame.NewKey(), frame.NewKey()
	copy(s.c.token[:4], k1[:])
	copy(s.c.token[4:], k2[:])
	copy(s.u.token[:4], k3[:])
	copy(s.u.token[4:], k4[:])
	return s
}

func (s *session) now() int64 { return int64(time.Since(s.start)) }

func (s *session) other(l *leg) *leg {
	if l == &s.c {
		return &s.u
	}
	return &s.c
}

// relay relays until both legs are finished, then calls onEnd. The
// client→upstream pump runs on the caller's goroutine; either pump may
// park (park.go) and go on later on another goroutine, so relay may return
// before the session ends.
func (s *session) relay() {
	s.pumps.Store(2)
	go s.runPump(&s.u)
	s.runPump(&s.c)
}

func (s *session) end() {
	if s.onEnd != nil {
		s.onEnd()
	}
}

// setWhy records the first terminal event (first wins); truncation is always
// reported because it is what the operator must see.
func (s *session) setWhy(why, by string) {
	s.mu.Lock()
	if why == whyTruncated {
		s.why, s.truncated = why, true
		if s.closedBy == "" {
			s.closedBy = by
		}
	} else if s.why == "" {
		s.why, s.closedBy = why, by
	}
	s.mu.Unlock()
}

// apply sends each side what the table says for ev. A side that is already
// awaiting our reply to its own Close gets its code echoed instead, so its
// close handshake completes.
func (s *session) apply(ev event, by string) {
	s.emu.Lock()
	defer s.emu.Unlock()
	s.applyLocked(ev, by)
}

func (s *session) applyLocked(ev event, by string) {
	r := closeTable[ev]
	s.setWhy(r.why, by)
	s.closeSide(&s.c, s.resolve(r.toClient), r.reason)
	s.closeSide(&s.u, s.resolve(r.toUpstream), r.reason)
}

// applyClientError handles a client's protocol error or bad UTF-8 in a data
// or control frame other than a Close: the upstream is sent its 1001 first
// and the client's 1002/1007 is owed until the upstream's Close reply (or
// its end, or close_timeout), so that messages the upstream sent before it
// saw our Close are still relayed to the client. When the upstream cannot
// be closed that way (it is closing already, or gone), both sides are
// closed at once as apply does.
func (s *session) applyClientError(ev event) {
	s.emu.Lock()
	defer s.emu.Unlock()
	r := closeTable[ev]
	u := &s.u
	if s.owed != 0 || s.c.sentClose.Load() || s.c.recvClose.Load() ||
		u.sentClose.Load() || u.recvClose.Load() || u.dead.Load() {
		s.applyLocked(ev, "gateway")
		return
	}
	s.setWhy(r.why, "gateway")
	// owing before the upstream's sentClose: its pump, which may read an
	// answer at once, must relay data rather than drop it.
	s.owed, s.owedWhy = r.toClient, r.reason
	s.owing.Store(true)
	s.sendClose(u, s.resolve(r.toUpstream), r.reason)
	if !u.sentAny {
		s.owed, s.owedWhy = 0, ""
		s.closeSide(&s.c, s.resolve(r.toClient), r.reason)
		s.owing.Store(false)
	}
}

// settle sends the client the Close it is owed, if any. The caller holds
// s.emu.
func (s *session) settle() {
	if s.owed != 0 {
		s.sendClose(&s.c, s.owed, s.owedWhy)
	}
}

func (s *session) resolve(c frame.CloseCode) frame.CloseCode {
	switch c {
	case codeFailure:
		return s.cfg.failureCode
	case codeShut:
		return s.cfg.shutdownCode
	}
	return c
}

func (s *session) closeSide(l *leg, code frame.CloseCode, reason string) {
	if l == &s.c && s.owed != 0 {
		// Whatever ends the session now, the client gets the code of
		// its own error.
		s.sendClose(l, s.owed, s.owedWhy)
		return
	}
	if l.recvClose.Load() {
		s.sendClose(l, l.recvCode, l.recvWhy)
		return
	}
	if code != codeNone {
		s.sendClose(l, code, reason)
	}
}

// sendClose writes a Close frame to l unless one was sent already or l is
// dead, and starts l's close timer. The caller holds s.emu.
func (s *session) sendClose(l *leg, code frame.CloseCode, reason string) {
	if !l.lockWrite() {
		return
	}
	var pb [frame.MaxControlPayload]byte
	var fb [frame.MaxHeaderSize + frame.MaxControlPayload]byte
	payload := frame.AppendClose(pb[:0], code, reason)
	h := frame.Header{Fin: true, Opcode: frame.OpClose}
	if l.side == sideUpstream {
		h.Masked, h.Key = true, frame.NewKey()
	}
	// Published before the write: the peer may answer at once, and the pump
	// reading its answer must take it for the reply to this Close, not for
	// a Close of its own to relay.
	l.sentClose.Store(true)
	if s.hooks != nil && s.hooks.closeWrite != nil {
		s.hooks.closeWrite(l.side)
	}
	err := l.writeLocked(frame.AppendFrame(fb[:0], h, payload), s.cfg.writeTimeout, time.Now())
	l.sentCode, l.sentWhy, l.sentAny = code, reason, err == nil
	l.closeOut.Store(true)
	l.wmu.Unlock()
	if err != nil {
		l.closeNow()
	}
	l.closeDeadline.CompareAndSwap(0, s.now()+int64(s.cfg.closeTimeout))
	l.wake()
}

// gone handles a leg whose peer vanished (EOF, reset, write or pong
// timeout): its conn is closed so its pump stops, and the other side gets the
// table's close — or, if it is waiting for a reply to its own Close, its code
// echoed.
func (s *session) gone(l *leg) {
	// Not dead.Swap: a failed write marks the leg dead first, and its
	// peer must still be handled as gone.
	if l.lost.Swap(true) {
		return
	}
	l.dead.Store(true)
	l.closeNow()
	l.kick()
	ev := goneEvent(l.side)
	r := closeTable[ev]
	s.emu.Lock()
	defer s.emu.Unlock()
	if !l.sentClose.Load() && !l.recvClose.Load() {
		s.setWhy(r.why, l.side.String())
	}
	code := r.toClient
	if l.side == sideClient {
		code = r.toUpstream
	}
	s.closeSide(s.other(l), s.resolve(code), r.reason)
}

// truncate ends a leg that is in the middle of a frame we are writing to it:
// no Close frame can be sent any more, only a TCP close. The caller holds
// l.wmu; by is who caused it. The leg's own pump must not treat the closed
// conn as its peer vanishing: whoever truncates decides the other side's
// close.
func (s *session) truncate(l *leg, by string) {
	l.cut.Store(true)
	l.lost.Store(true)
	l.dead.Store(true)
	l.closeNow()
	l.kick()
	s.setWhy(whyTruncated, by)
}

// violation closes the session for a frame-level violation by src's peer.
// A client's protocol error or bad UTF-8 in a data frame waits for the
// upstream's reply (applyClientError); everything else, and any violation
// in a Close frame (the peer's sending is over), closes both sides at once.
// Caps and rate limits are not violations: they close at once too.
func (s *session) violation(src *leg, err error) {
	code, ok := frame.CodeOf(err)
	if !ok {
		code = frame.CloseProtocolError
	}
	ev := violationEvent(src.side, code)
	if ev == evClientProtocol || ev == evClientBadData {
		s.applyClientError(ev)
		return
	}
	s.apply(ev, "gateway")
}

// badClose handles a Close frame from src that is itself invalid (a 1-byte
// payload, an illegal code, a reason that is not UTF-8, a payload over 125
// bytes, a fragmented or wrongly masked Close): the peer has ended its
// sending all the same, so it gets the table's answer at once and, once
// the lingering read has nothing left to drain, the TCP connection is
// closed (the pump sees src.abrupt). No second Close will come to wait
// for.
func (s *session) badClose(src *leg, err error) {
	code, ok := frame.CodeOf(err)
	if !ok {
		code = frame.CloseProtocolError
	}
	s.apply(violationEvent(src.side, code), "gateway")
	src.abrupt = true
	if !src.recvClose.Load() {
		src.recvCode, src.recvWhy = frame.CloseNoStatus, ""
		src.recvClose.Store(true)
	}
}

// noDeadline: no timer is due.
const noDeadline = math.MaxInt64

// timersDeadline is the next moment l's timers need looking at (since
// session start): the close deadline while closing; otherwise the next
// keepalive ping or pong deadline and the idle deadline.
func (s *session) timersDeadline(l *leg) int64 {
	if d := l.closeDeadline.Load(); d != 0 {
		return d
	}
	d := int64(noDeadline)
	if s.cfg.pingInterval > 0 {
		if l.pingSent != 0 {
			d = l.pingSent + int64(s.cfg.pongTimeout)
		} else {
			d = l.lastRead + int64(s.cfg.pingInterval)
		}
	}
	if s.cfg.idleTimeout > 0 {
		d = min(d, s.lastData.Load()+int64(s.cfg.idleTimeout))
	}
	return d
}

// rearm sets l's read deadline to the next moment the pump must look at its
// timers, or may park.
func (s *session) rearm(l *leg) {
	for {
		gen := l.gen.Load()
		d := s.timersDeadline(l)
		if p := l.parkDeadline(); p != 0 && l.closeDeadline.Load() == 0 {
			// A park deadline already past is one the pump could not
			// act on: it was inside a frame (a slow sender, or a long
			// write of the frame to the other side). Read on and look
			// again parkAfter later; a deadline in the past would
			// time every read out at once, without reading, and the
			// pump would spin.
			if now := s.now(); p <= now {
				p = now + int64(parkAfter)
			}
			d = min(d, p)
		}
		var t time.Time
		if d != noDeadline {
			t = s.start.Add(time.Duration(d))
		}
		_ = l.conn.SetReadDeadline(t)
		// A wake between the loads and SetReadDeadline was overwritten:
		// look again.
		if l.gen.Load() == gen {
			return
		}
	}
}

// tickResult is what a leg's timers say when its read timed out.
type tickResult uint8

const (
	tickGoOn   tickResult = iota // keep reading (a keepalive ping may have been sent)
	tickClosed                   // the close handshake ran out of time
	tickIdle                     // no data frame either way for idle_timeout
	tickGone                     // no frame at all within pong_timeout of our ping
)

// tick runs l's timers after a read on it timed out (or was woken). It sends
// a keepalive ping when one is due; everything else it only reports.
func (s *session) tick(l *leg) tickResult {
	now := s.now()
	if d := l.closeDeadline.Load(); d != 0 {
		if now >= d {
			return tickClosed
		}
		return tickGoOn
	}
	if s.cfg.idleTimeout > 0 && now-s.lastData.Load() >= int64(s.cfg.idleTimeout) {
		return tickIdle
	}
	if s.cfg.pingInterval > 0 {
		if l.pingSent != 0 {
			// SPEC: no frame at all within pong_timeout after our ping: the
			// leg is gone. Any frame counts (RFC 6455 §5.5.3 lets a peer
			// answer only the latest ping).
			if now-l.pingSent >= int64(s.cfg.pongTimeout) {
				return tickGone
			}
		} else if now-l.lastRead >= int64(s.cfg.pingInterval) {
			if s.ping(l) {
				l.pingSent = now
			} else {
				// A frame is streaming into l right now: its writes show
				// whether l's peer is reading (write_timeout). Look again
				// one interval later.
				l.lastRead = now
			}
		}
	}
	return tickGoOn
}

// timer runs l's timers at a frame boundary and acts on them. It reports
// whether the pump should keep reading l.
func (s *session) timer(l *leg) bool {
	return s.act(l, s.tick(l))
}

func (s *session) act(l *leg, t tickResult) bool {
	switch t {
	case tickClosed:
		return false
	case tickGone:
		s.gone(l)
		return false
	case tickIdle:
		s.apply(evIdle, "gateway")
	}
	s.rearm(l)
	return true
}

// ping sends a keepalive ping on l. It never waits for l's write lock:
// the other pump may hold it for a whole large frame, and waiting would
// stop this pump from reading l meanwhile. It reports whether the ping was
// sent.
func (s *session) ping(l *leg) bool {
	if !l.wmu.TryLock() {
		return false
	}
	if l.sentClose.Load() || l.dead.Load() {
		l.wmu.Unlock()
		return false
	}
	var fb [frame.MaxHeaderSize + 8]byte
	h := frame.Header{Fin: true, Opcode: frame.OpPing}
	if l.side == sideUpstream {
		h.Masked, h.Key = true, frame.NewKey()
	}
	err := l.writeLocked(frame.AppendFrame(fb[:0], h, l.token[:]), s.cfg.writeTimeout, time.Now())
	l.wmu.Unlock()
	if err != nil {
		s.gone(l)
	}
	return err == nil
}

// pump reads frames from src and relays them to dst until src is finished:
// its close handshake done and its TCP connection ended, or it is gone.
// It reports true if it parked src instead (park.go): the session goes on
// without this goroutine.
func (s *session) pump(src, dst *leg) (parked bool) {
	s.rearm(src)
	drained := false
	for {
		if src.dead.Load() {
			break
		}
		if src.recvClose.Load() {
			// The peer sent its Close: nothing it sends from now on is a
			// frame we act on. Wait for our reply to go out (we are woken),
			// then for its FIN. The server side closes first (RFC 6455
			// §7.1.1): half-close the client leg once both Closes are out.
			if src.abrupt && src.closeOut.Load() {
				// Its Close was invalid: we answered, nothing more
				// is to come. Close without waiting for its FIN.
				s.drainNow(src)
				break
			}
			// closeOut, not sentClose: sentClose is published before
			// the write, and a half-close before it would make the
			// write fail (EPIPE) and lose the reply.
			if src.closeOut.Load() && !drained {
				drained = true
				if src.side == sideClient {
					src.closeWrite()
				}
			}
			if !s.discard(src) {
				break
			}
			continue
		}
		h, err := frame.ReadHeader(src.br, src.rules)
		if src.pend != nil && (err != nil || h.Opcode.IsControl() || h.Length > smallFrame || src.sentClose.Load()) {
			s.flush(src) // only small data frames join a batch
		}
		if err != nil {
			if isTimeout(err) {
				if !s.timer(src) {
					break
				}
				if s.park(src) {
					return true
				}
				continue
			}
			if _, ok := err.(*frame.Error); ok {
				if h.Opcode == frame.OpClose {
					s.badClose(src, err)
					continue
				}
				if !src.sentClose.Load() {
					s.violation(src, err)
				}
				// Linger (SPEC "Close translation"): step over the payload
				// and look for the peer's Close, even if it goes on sending
				// bad frames after ours. Closing with its data unread would
				// make the kernel answer with a RST that can destroy the
				// Close frame we just sent; the close deadline bounds this.
				if !s.skip(src, h.Length) {
					break
				}
				continue
			}
			// EOF or reset: the leg is over.
			s.gone(src)
			break
		}
		src.lastRead = s.now()
		src.pingSent = 0
		src.frames.Add(1)
		if s.lim != nil && src.side == sideClient && h.Opcode != frame.OpClose && !s.closingLeg(src) {
			if !s.limit(src, h) {
				// Over a limit, on_exceed: close. As after a violation,
				// step over the payload and linger for the client's Close,
				// so that its 1008 is not destroyed by a reset.
				if !s.skip(src, h.Length) {
					break
				}
				continue
			}
		}
		if s.closingLeg(src) && !s.relayWhileOwing(src, h) {
			// We closed this leg (or owe its peer a Close): discard
			// data, wait for its Close.
			if !s.awaitClose(src, h) {
				break
			}
			continue
		}
		if h.Opcode.IsControl() {
			if !s.control(src, dst, h) {
				break
			}
			continue
		}
		if err := src.msg.Next(h); err != nil {
			s.flush(src)
			s.violation(src, err)
			if !s.skip(src, h.Length) {
				break
			}
			continue
		}
		s.lastData.Store(src.lastRead)
		if !s.data(src, dst, h) {
			break
		}
	}
	s.finish(src)
	return false
}

// closingLeg reports whether src's data is no longer relayed: we sent it a
// Close, or (client) it broke the protocol and owes us nothing more.
func (s *session) closingLeg(src *leg) bool {
	return src.sentClose.Load() || (src.side == sideClient && s.owing.Load())
}

// relayWhileOwing reports whether a data frame from src, the upstream we
// sent a Close to after a client's protocol error, is still relayed to the
// client: it was sent before the upstream saw our Close.
func (s *session) relayWhileOwing(src *leg, h frame.Header) bool {
	return src.side == sideUpstream && s.owing.Load() && !h.Opcode.IsControl() && !src.recvClose.Load()
}

// drainNow reads what src's peer already sent (bounded), without waiting
// for more, so that closing the connection does not make the kernel answer
// unread data with a reset that could destroy the Close just sent.
func (s *session) drainNow(src *leg) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	_ = src.conn.SetReadDeadline(time.Now())
	for n := 0; n < drainMax; {
		k, err := src.br.Read(*bp)
		n += k
		if err != nil {
			return
		}
	}
}

// drainMax bounds what drainNow reads.
const drainMax = 1 << 20

// finish ends src's connection: the other leg, if it is waiting for a reply
// that src will never give, gets its own code echoed. So does src itself if
// its Close is still unanswered (its close deadline ran out before the
// other pump's): a session never hangs up on a Close without replying.
func (s *session) finish(src *leg) {
	s.flush(src)
	o := s.other(src)
	s.emu.Lock()
	if src.side == sideUpstream {
		s.settle()
	}
	if src.recvClose.Load() {
		s.closeSide(src, codeNone, "")
	}
	if o.recvClose.Load() {
		s.closeSide(o, codeNone, "")
	} else if !o.sentClose.Load() && !src.cut.Load() {
		s.applyLocked(goneEvent(src.side), src.side.String())
	}
	s.emu.Unlock()
	if src.dead.Load() {
		// A write failed or the peer vanished: no close_notify (closeNow).
		src.closeNow()
	} else {
		src.closeWrite()
	}
	src.dead.Store(true)
	src.unwatch()
	src.conn.Close()
	putReader(src.br)
	src.br = nil
}

// discard reads and drops whatever src still sends, until EOF or its close
// deadline. It reports whether to keep going.
func (s *session) discard(src *leg) bool {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	_, err := src.br.Read(*bp)
	if err == nil {
		return true
	}
	if isTimeout(err) {
		return s.timer(src)
	}
	return false
}

// readFull reads len(p) payload bytes from src, running src's timers when a
// read times out. It reports false if src ended first.
func (s *session) readFull(src *leg, p []byte) bool {
	for len(p) > 0 {
		n, err := src.br.Read(p)
		p = p[n:]
		if err != nil {
			if isTimeout(err) && s.timer(src) {
				continue
			}
			if !isTimeout(err) {
				s.gone(src)
			}
			return false
		}
	}
	return true
}

// awaitClose handles a frame from a leg we have sent a Close to: data is
// dropped; its Close completes the handshake.
func (s *session) awaitClose(src *leg, h frame.Header) bool {
	if h.Opcode != frame.OpClose {
		return s.skip(src, h.Length)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	p := (*bp)[:h.Length]
	if !s.readFull(src, p) {
		return false
	}
	frame.Mask(h.Key, 0, p)
	code, reason, err := frame.ParseClose(p)
	if err != nil {
		code, reason = frame.CloseNoStatus, nil
	}
	src.recvCode, src.recvWhy = code, string(reason)
	src.recvClose.Store(true)
	// If the other side started this close handshake, this is the reply it
	// waits for: relay it (SPEC: "relays the upstream's Close reply").
	s.emu.Lock()
	if src.side == sideUpstream && s.owed != 0 {
		// The upstream answered the 1001 of a client's protocol error:
		// now the client gets its 1002/1007.
		s.settle()
	} else if o := s.other(src); o.recvClose.Load() {
		s.sendClose(o, code, string(reason))
	}
	s.emu.Unlock()
	if err != nil {
		src.abrupt = true
	}
	return true
}

func (s *session) skip(src *leg, n int64) bool {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for n > 0 {
		k := int64(len(buf))
		if n < k {
			k = n
		}
		if !s.readFull(src, buf[:k]) {
			return false
		}
		n -= k
	}
	return true
}

// control relays a ping or pong, or handles a Close, from src.
func (s *session) control(src, dst *leg, h frame.Header) bool {
	// A pooled buffer, not one on the stack: reads and writes take their
	// slices through interfaces, so a stack array would be moved to the
	// heap on every frame.
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	const room = frame.MaxHeaderSize
	p := buf[room : room+int(h.Length)]
	if !s.readFull(src, p) {
		return false
	}
	if h.Masked {
		frame.Mask(h.Key, 0, p)
	}
	switch h.Opcode {
	case frame.OpClose:
		code, reason, err := frame.ParseClose(p)
		if err != nil {
			s.badClose(src, err)
			return true
		}
		src.recvCode, src.recvWhy = code, string(reason)
		src.recvClose.Store(true)
		src.closeDeadline.CompareAndSwap(0, s.now()+2*int64(s.cfg.closeTimeout))
		s.rearm(src)
		s.emu.Lock()
		if !src.sentClose.Load() {
			// src starts the close handshake: relay it.
			s.setWhy(whyNormal, src.side.String())
		}
		s.sendClose(dst, code, string(reason))
		s.emu.Unlock()
		if s.hooks != nil && s.hooks.closeRelayed != nil {
			s.hooks.closeRelayed(src.side)
		}
		return true
	case frame.OpPong:
		if bytes.Equal(p, src.token[:]) {
			return true // the answer to our keepalive: consumed
		}
	}
	out := h
	out.Masked = dst.side == sideUpstream
	if out.Masked {
		out.Key = frame.NewKey()
		frame.Mask(out.Key, 0, p)
	}
	hs := out.Size()
	frame.PutHeader(buf[room-hs:], out)
	return s.write(dst, buf[room-hs:room+len(p)])
}

// write writes one whole frame to dst. A failed write means dst's peer is
// gone. It reports whether src's pump should continue (it always should:
// dst's failure is handled through the table).
func (s *session) write(dst *leg, b []byte) bool {
	if !dst.lockWrite() {
		return true
	}
	err := dst.writeLocked(b, s.cfg.writeTimeout, time.Now())
	dst.wmu.Unlock()
	if err != nil {
		s.gone(dst)
	}
	return true
}

// data relays one data frame. Frames up to smallFrame are read and checked
// whole before they are forwarded; larger ones stream through one buffer
// (a large one when it can, see streamChunk).
func (s *session) data(src, dst *leg, h frame.Header) bool {
	const room = frame.MaxHeaderSize
	out := h
	out.Masked = dst.side == sideUpstream
	if out.Masked {
		out.Key = frame.NewKey()
	}
	if h.Length > smallFrame {
		if big := getStreamBuf(); big != nil {
			defer putStreamBuf(big)
			return s.stream(src, dst, h, out, *big)
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	if h.Length <= smallFrame {
		p := buf[room : room+int(h.Length)]
		if !s.readFull(src, p) {
			return false
		}
		if err := s.relayPayload(src, h, out, 0, p); err != nil {
			s.flush(src)
			s.violation(src, err)
			return true
		}
		s.count(src, h)
		hs := out.Size()
		frame.PutHeader(buf[room-hs:], out)
		return s.emit(src, dst, buf[room-hs:room+len(p)])
	}
	return s.stream(src, dst, h, out, buf)
}

// Large frames stream through a streamChunk buffer when one is free: each
// read and write then moves up to 256 KiB instead of 16 KiB, which cuts the
// gateway's CPU per MiB streamed by about a quarter (stream-large). At most
// maxStreamBufs are out at a time, so however many peers send large frames
// slowly, they pin at most maxStreamBufs × streamChunk (16 MiB); past that,
// frames stream through the 16 KiB relay buffer as before.
const (
	streamChunk   = 256 << 10
	maxStreamBufs = 64
)

var (
	streamPool = sync.Pool{New: func() any {
		b := make([]byte, frame.MaxHeaderSize+streamChunk)
		return &b
	}}
	streamBufs = make(chan struct{}, maxStreamBufs)
)

// getStreamBuf returns a large stream buffer, or nil if maxStreamBufs are
// out.
func getStreamBuf() *[]byte {
	select {
	case streamBufs <- struct{}{}:
		return streamPool.Get().(*[]byte)
	default:
		return nil
	}
}

func putStreamBuf(b *[]byte) {
	streamPool.Put(b)
	<-streamBufs
}

// relayPayload turns a chunk of src's frame payload at pos into dst's: it
// unmasks it, validates it, and masks it with out's key. A binary payload
// needs no inspection, so client -> upstream it is re-masked in one pass.
func (s *session) relayPayload(src *leg, h, out frame.Header, pos int, p []byte) error {
	if h.Masked && out.Masked && src.msg.Opcode() != frame.OpText {
		frame.Remask(h.Key, out.Key, pos, p)
	} else {
		if h.Masked {
			frame.Mask(h.Key, pos, p)
		}
		if err := src.msg.Payload(p); err != nil {
			return err
		}
		if out.Masked {
			frame.Mask(out.Key, pos, p)
		}
	}
	if pos+len(p) == int(h.Length) {
		return src.msg.EndFrame()
	}
	return nil
}

func (s *session) count(src *leg, h frame.Header) {
	src.bytes.Add(h.Length)
	if h.Fin {
		src.messages.Add(1)
	}
}

// stream relays a large frame chunk by chunk, holding dst's write lock for
// the whole frame so nothing interleaves with it. If src ends or its payload
// turns out invalid part-way, dst has a partial frame and can only be
// truncated (TCP close) — unless none of it went out yet, in which case dst
// can still get a clean Close.
func (s *session) stream(src, dst *leg, h, out frame.Header, buf []byte) bool {
	const room = frame.MaxHeaderSize
	writing := dst.lockWrite()
	hs := out.Size()
	frame.PutHeader(buf[room-hs:], out)
	first := true // nothing of the frame was written yet
	// abort gives up dst's copy of the frame; by is who caused it.
	abort := func(by string) {
		if !writing {
			return
		}
		writing = false
		if !first {
			s.truncate(dst, by)
		}
		dst.wmu.Unlock()
	}
	var pos int64
	for pos < h.Length {
		// The first chunk is at most smallFrame, as for a whole small
		// frame: a violation in it still gets dst a clean Close (SPEC:
		// only a leg past its first 16 KiB is truncated).
		chunk := int64(len(buf) - room)
		if first {
			chunk = smallFrame
		}
		n := min(h.Length-pos, chunk)
		k, err := src.br.Read(buf[room : room+int(n)])
		if k > 0 {
			// Payload is life: a peer inside a large frame cannot answer a
			// ping until the frame ends (RFC 6455 §5.4: control frames
			// only between fragments), so its bytes count as the frame
			// the pong timeout waits for.
			src.lastRead = s.now()
			src.pingSent = 0
		}
		if err != nil && k == 0 {
			t := tickGone // EOF or reset: src vanished mid-frame
			if isTimeout(err) {
				if t = s.tick(src); t == tickGoOn {
					s.rearm(src)
					continue
				}
			}
			by := "gateway"
			if t == tickGone {
				by = src.side.String()
			}
			abort(by)
			if !s.act(src, t) {
				return false
			}
			// Still reading src (idle_timeout): step over the rest of
			// the frame and wait for its Close.
			return s.skip(src, h.Length-pos)
		}
		p := buf[room : room+k]
		if err := s.relayPayload(src, h, out, int(pos), p); err != nil {
			abort("gateway")
			s.violation(src, err)
			// Stay in step with src's framing to find its Close reply.
			return s.skip(src, h.Length-pos-int64(k))
		}
		pos += int64(k)
		s.lastData.Store(s.now())
		if !writing {
			continue
		}
		b := p
		if first {
			b = buf[room-hs : room+k]
			first = false
		}
		if err := dst.writeChunk(b, s.cfg.writeTimeout); err != nil {
			// dst stopped taking writes: it is gone, now (its pump and
			// the table's close for src must not wait for the rest of
			// this frame). Go on reading the frame so src stays in step.
			dst.wmu.Unlock()
			writing = false
			s.gone(dst)
		}
	}
	if writing {
		dst.wmu.Unlock()
	}
	s.count(src, h)
	return true
}

// pendMax bounds a batch of coalesced frames.
const pendMax = 32 << 10

var pendPool = sync.Pool{New: func() any {
	b := make([]byte, 0, pendMax)
	return &b
}}

// emit writes a small frame b (read from src) to the other leg. When the
// next frame from src is already in src's read buffer in full, b is held
// back and written together with the frames after it: one write system call
// for a burst of pipelined frames instead of one per frame. It never waits
// for input: as soon as the next frame is not complete in the buffer, the
// batch goes out, so coalescing adds no latency.
func (s *session) emit(src, dst *leg, b []byte) bool {
	if s.nextSmallDataBuffered(src) {
		if src.pend != nil && len(*src.pend)+len(b) > pendMax {
			s.flush(src)
		}
		if src.pend == nil {
			src.pend = pendPool.Get().(*[]byte)
		}
		*src.pend = append(*src.pend, b...)
		return true
	}
	if src.pend == nil {
		return s.write(dst, b)
	}
	if len(*src.pend)+len(b) > pendMax {
		s.flush(src)
		return s.write(dst, b)
	}
	*src.pend = append(*src.pend, b...)
	s.flush(src)
	return true
}

// flush writes the frames src's pump holds back, if any.
func (s *session) flush(src *leg) {
	if src.pend == nil {
		return
	}
	p := src.pend
	src.pend = nil
	if len(*p) > 0 {
		s.write(s.other(src), *p)
	}
	*p = (*p)[:0]
	pendPool.Put(p)
}

// nextSmallDataBuffered reports whether src's read buffer holds the whole
// next frame and it is a data frame that emit may batch.
func (s *session) nextSmallDataBuffered(src *leg) bool {
	n := src.br.Buffered()
	if n < 2 {
		return false
	}
	b, _ := src.br.Peek(n)
	h, hn, err := frame.DecodeHeader(b, src.rules)
	return err == nil && !h.Opcode.IsControl() && h.Length <= smallFrame && int64(n-hn) >= h.Length
}

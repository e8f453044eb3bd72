package relay

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"wsgate/frame"
)

// Config is what a session needs from its route's config snapshot
// (README "Configuration": the route settings of the same names).
type Config struct {
	PingInterval, PongTimeout, IdleTimeout time.Duration
	CloseTimeout, WriteTimeout             time.Duration
	MaxFrame, MaxMessage                   int64
	FailureCode, ShutdownCode              frame.CloseCode // upstream_failure_code, shutdown_close_code
}

// Session relays one client connection and its upstream connection. It owns
// both legs and all relay state; two pumps (one per direction, the first
// running on Run's goroutine) move frames, and whichever sees the first
// terminal event decides the close frames both sides get.
type Session struct {
	// Who the session is for, as the access log and metrics name it. Set
	// before Run and never changed.
	Route    string
	Client   string // the client's address
	Upstream string // the upstream's configured URL
	Protocol string // the subprotocol chosen
	// Compression is the permessage-deflate response the client got
	// ("" if none), for the access log; see SetDeflate.
	Compression string
	User        string // who authenticated (the token's sub), "" if nobody

	// ID names the session in the sessions API and the logs. Set before
	// Run and never changed. (It lives here, in room the Session's size
	// class has anyway, so that an idle session costs no extra
	// allocation for it.)
	ID [16]byte

	// OnEnd is called once, when both pumps have finished.
	OnEnd func()
	// Hooks are for tests only; nil otherwise.
	Hooks *Hooks

	// cfg is the route's, shared by its sessions and never changed: a
	// pointer keeps the Session in the 896-byte size class (an idle
	// session's biggest allocation; size_test.go).
	cfg   *Config
	start time.Time
	lim   *Limits // the client's rate limits; nil: none
	poll  *Poller // nil: legs never park
	// lifetime is when the session ends for its age (since start; 0 =
	// never): one more deadline among the timers (lifetime.go).
	lifetime int64
	// expires is when the client's credential runs out (since start; 0 =
	// never): one more deadline among the timers (expiry.go).
	expires int64

	c, u     leg
	lastData atomic.Int64 // since start: last data frame in either direction
	pumps    atomic.Int32 // pumps not finished yet

	// push holds messages pushed to the client (push.go); nil until the
	// first push.
	push atomic.Pointer[pushQueue]

	// emu serialises close decisions: which Close each leg gets is decided
	// and sent under it, so two terminal events (or an event and a peer's
	// Close) never interleave half-way. It is taken before a leg's wmu,
	// never while holding one.
	emu sync.Mutex

	// owed is the Close the client is owed after a protocol error of its
	// own (evClientProtocol, evClientBadData), held back until the upstream
	// answered the 1001 it was sent first, or ended: data the upstream sent
	// before it saw our Close still reaches the client, as it would from a
	// server without a gateway in front (docs/relay.md "Order of the
	// closes"). Guarded by emu; owing is set with it, for the client's pump.
	owed  frame.CloseCode
	owing atomic.Bool
	// truncated is part of the outcome below (guarded by mu); it sits
	// here, in owed's padding.
	truncated bool
	owedWhy   string

	mu       sync.Mutex // guards the outcome below, and truncated
	why      string
	closedBy string
}

// Hooks are points where a test can stall the relay to make a race between
// the two pumps happen every time. Each is called only on a close path,
// never per frame.
type Hooks struct {
	// CloseRelayed runs on src's pump after it relayed src's Close to the
	// other side, before it looks at the session again.
	CloseRelayed func(src Side)
	// CloseWrite runs just before a Close frame is written to the leg on
	// side l, after the leg was marked as closing.
	CloseWrite func(l Side)
}

// New returns a session with cfg, which it keeps (and never changes);
// Attach gives it its connections.
func New(cfg *Config) *Session {
	s := &Session{cfg: cfg, start: time.Now()}
	s.c.side, s.u.side = SideClient, SideUpstream
	s.c.s, s.u.s = s, s
	s.c.rules = frame.Rules{Sender: frame.FromClient, MaxPayload: cfg.MaxFrame}
	s.u.rules = frame.Rules{Sender: frame.FromServer, MaxPayload: cfg.MaxFrame}
	s.c.msg.MaxSize, s.u.msg.MaxSize = cfg.MaxMessage, cfg.MaxMessage
	k1, k2, k3, k4 := frame.NewKey(), frame.NewKey(), frame.NewKey(), frame.NewKey()
	copy(s.c.token[:4], k1[:])
	copy(s.c.token[4:], k2[:])
	copy(s.u.token[:4], k3[:])
	copy(s.u.token[4:], k4[:])
	return s
}

// Attach gives the session its client and upstream connections. Each
// reader holds what was read past the handshake (nil: nothing). p watches
// parked legs; nil: legs never park.
func (s *Session) Attach(client net.Conn, cbr *bufio.Reader, upstream net.Conn, ubr *bufio.Reader, p *Poller) {
	s.poll = p
	s.c.attach(s, client, cbr)
	s.u.attach(s, upstream, ubr)
}

// SetLimits sets the client's rate limits (nil: none). Call before Run.
func (s *Session) SetLimits(l *Limits) {
	s.lim = l
	if l != nil && l.Throttle {
		s.c.wakec = make(chan struct{}, 1)
	}
}

func (s *Session) now() int64 { return int64(time.Since(s.start)) }

func (s *Session) other(l *leg) *leg {
	if l == &s.c {
		return &s.u
	}
	return &s.c
}

// relay relays until both legs are finished, then calls onEnd. The
// client→upstream pump runs on the caller's goroutine; either pump may
// park (park.go) and go on later on another goroutine, so relay may return
// before the session ends.
func (s *Session) relay() {
	s.pumps.Store(2)
	go s.runPump(&s.u)
	s.runPump(&s.c)
}

func (s *Session) end() {
	if s.OnEnd != nil {
		s.OnEnd()
	}
}

// setWhy records the first terminal event (first wins); truncation is always
// reported because it is what the operator must see.
func (s *Session) setWhy(why, by string) {
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
func (s *Session) apply(ev event, by string) {
	s.emu.Lock()
	defer s.emu.Unlock()
	s.applyLocked(ev, by)
}

func (s *Session) applyLocked(ev event, by string) {
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
func (s *Session) applyClientError(ev event) {
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
func (s *Session) settle() {
	if s.owed != 0 {
		s.sendClose(&s.c, s.owed, s.owedWhy)
	}
}

func (s *Session) resolve(c frame.CloseCode) frame.CloseCode {
	switch c {
	case codeFailure:
		return s.cfg.FailureCode
	case codeShut:
		return s.cfg.ShutdownCode
	}
	return c
}

func (s *Session) closeSide(l *leg, code frame.CloseCode, reason string) {
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
func (s *Session) sendClose(l *leg, code frame.CloseCode, reason string) {
	if !l.lockWrite() {
		return
	}
	var pb [frame.MaxControlPayload]byte
	var fb [frame.MaxHeaderSize + frame.MaxControlPayload]byte
	payload := frame.AppendClose(pb[:0], code, reason)
	h := frame.Header{Fin: true, Opcode: frame.OpClose}
	if l.side == SideUpstream {
		h.Masked, h.Key = true, frame.NewKey()
	}
	// Published before the write: the peer may answer at once, and the pump
	// reading its answer must take it for the reply to this Close, not for
	// a Close of its own to relay.
	l.sentClose.Store(true)
	if s.Hooks != nil && s.Hooks.CloseWrite != nil {
		s.Hooks.CloseWrite(l.side)
	}
	err := l.writeLocked(frame.AppendFrame(fb[:0], h, payload), s.cfg.WriteTimeout, time.Now())
	l.sentCode, l.sentWhy, l.sentAny = code, reason, err == nil
	l.closeOut.Store(true)
	l.wmu.Unlock()
	if err != nil {
		l.closeNow()
	}
	l.closeDeadline.CompareAndSwap(0, s.now()+int64(s.cfg.CloseTimeout))
	l.wake()
}

// gone handles a leg whose peer vanished (EOF, reset, write or pong
// timeout): its conn is closed so its pump stops, and the other side gets the
// table's close — or, if it is waiting for a reply to its own Close, its code
// echoed.
func (s *Session) gone(l *leg) {
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
	if l.side == SideClient {
		code = r.toUpstream
	}
	s.closeSide(s.other(l), s.resolve(code), r.reason)
}

// truncate ends a leg that is in the middle of a frame we are writing to it:
// no Close frame can be sent any more, only a TCP close. The caller holds
// l.wmu; by is who caused it. The leg's own pump must not treat the closed
// conn as its peer vanishing: whoever truncates decides the other side's
// close.
func (s *Session) truncate(l *leg, by string) {
	l.cut.Store(true)
	l.lost.Store(true)
	l.dead.Store(true)
	l.closeNow()
	l.kick()
	s.setWhy(whyTruncated, by)
}

// violation closes the session for a frame-level violation by src's peer.
// A client's protocol error or bad UTF-8 waits for the upstream's reply
// (applyClientError); everything else closes both sides at once: the
// upstream's violations, and a client over max_frame_bytes or
// max_message_bytes (it may be flooding). A violation in a Close frame goes
// to badClose instead, and rate limits to limit.
func (s *Session) violation(src *leg, err error) {
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
func (s *Session) badClose(src *leg, err error) {
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

package relay

import (
	"bufio"
	"net"
	"time"
)

// Parking. A session's two pumps each block in a read; a blocked goroutine
// costs its stack and the read buffer it holds. A leg that has gone
// ParkAfter without a frame therefore parks at a frame boundary: its read
// buffer goes back to readerPool, the poller (park_linux.go) watches its
// descriptor, a timer stands in for its read deadline, and its pump
// goroutine ends. Whichever comes first — data or EOF on the descriptor, the
// timer, or a wake from the rest of the session (a Close to send, the other
// side gone, shutdown) — starts a new pump goroutine on the same leg state.
//
// Legs over TCP park, with TLS or the PROXY protocol on top or not (see
// tcpUnder); only a leg with no socket under it (net.Pipe) never does.

// ParkAfter is how long a leg must go without a frame before it parks. Busy
// legs never park; an idle one costs one extra wake-up when it does.
const ParkAfter = time.Second

// attach makes c the leg's connection. br holds whatever was read past the
// handshake; when it holds nothing a pooled reader takes its place (reads
// then go to c directly, not through the handshake's reader). Legs over
// TCP are marked parkable.
func (l *leg) attach(s *Session, c net.Conn, br *bufio.Reader) {
	l.s, l.conn = s, c
	if br == nil || br.Buffered() == 0 {
		br = getReader(c)
	}
	l.br = br
	l.canPark = tcpUnder(c) != nil
}

// tcpUnder is the TCP connection under c, through the layers the gateway
// puts on one (its listener's wrapper, the PROXY protocol reader, TLS: each
// gives the connection below through NetConn), or nil (a net.Pipe).
//
// A layer may keep bytes it read from the socket in a buffer of its own —
// the PROXY reader what followed the header, TLS a partial record — where
// the descriptor's readiness cannot see them. That does not stop the leg
// parking: it parks only right after a read timed out at a frame boundary,
// and a layer's read blocks on the socket (and so can time out) only when
// it has nothing buffered that it could return. A partial TLS record needs
// more bytes from the socket, which wake the leg.
func tcpUnder(c net.Conn) *net.TCPConn {
	for {
		switch x := c.(type) {
		case *net.TCPConn:
			return x
		case interface{ NetConn() net.Conn }: // TLS, the gateway's listener wrapper
			c = x.NetConn()
		default:
			return nil
		}
	}
}

// parkDeadline is the moment l may park (since session start); 0 if never.
func (l *leg) parkDeadline() int64 {
	if !l.canPark || l.s.poll == nil {
		return 0
	}
	return max(l.lastRead, l.resumed) + int64(ParkAfter)
}

// park ends src's pump if src may park now: it is quiet, at a frame
// boundary with nothing buffered or held back, and not closing. It reports
// whether it parked; if so the caller's goroutine must return at once
// without touching the leg (another pump may already run on it).
// The caller has just run src's timers (and rearmed its read deadline).
func (s *Session) park(src *leg) bool {
	d := src.parkDeadline()
	if d == 0 || s.now() < d {
		return false
	}
	if !s.tryPark(src) {
		// Not now: look again ParkAfter later, not at once (the read
		// deadline would otherwise stay in the past).
		src.resumed = s.now()
		s.rearm(src)
		return false
	}
	return true
}

func (s *Session) tryPark(src *leg) bool {
	if src.br.Buffered() > 0 || src.pend != nil || !s.parkable(src) {
		return false
	}
	p := s.poll
	src.pmu.Lock()
	defer src.pmu.Unlock()
	gen := src.gen.Load()
	br := src.br
	src.br = nil
	src.parked.Store(true)
	// A wake that came before the store changed what parkable or gen
	// show; one after it finds the leg parked and resumes it.
	if gen != src.gen.Load() || !s.parkable(src) || !s.parkTimer(src) || !p.arm(src) {
		if src.parked.CompareAndSwap(true, false) {
			p.unschedule(src)
			src.br = br
			return false
		}
		// Resumed already, on a new goroutine with a new reader.
	}
	putReader(br)
	s.poll.trim.parked.Add(1)
	return true
}

// parkable reports whether nothing but new input or a timer can give src's
// pump work.
func (s *Session) parkable(src *leg) bool {
	return !src.dead.Load() && !src.sentClose.Load() && !src.recvClose.Load() &&
		src.closeDeadline.Load() == 0 && src.wakec == nil && !s.pushWaiting(src)
}

// parkTimer sets src's timer (on the poller) to its next keepalive or idle
// deadline, if it has one. The caller holds src.pmu.
func (s *Session) parkTimer(src *leg) bool {
	d := s.timersDeadline(src)
	if d == noDeadline {
		s.poll.unschedule(src)
		return true
	}
	s.poll.schedule(src, time.Duration(d-s.now()))
	return true
}

// unwatch stops watching l for good (it is finishing): its poller entry and
// timer go.
func (l *leg) unwatch() {
	l.pmu.Lock()
	if l.armed {
		l.s.poll.forget(l)
		l.armed = false
	}
	if l.s.poll != nil {
		l.s.poll.unschedule(l)
	}
	l.pmu.Unlock()
}

// unpark starts l's pump again if it is parked. readable says the poller
// saw input: the pump then reads before it may park again.
func (l *leg) unpark(readable bool) {
	if l.parked.CompareAndSwap(true, false) {
		go l.s.resume(l, readable)
	}
}

func (s *Session) resume(l *leg, readable bool) {
	l.pmu.Lock() // the parking goroutine may still be on its way out
	s.poll.unschedule(l)
	l.pmu.Unlock()
	if readable {
		l.resumed = s.now()
	}
	s.poll.trim.parked.Add(-1)
	l.br = getReader(l.conn)
	s.runPump(l)
}

// runPump runs l's pump until it parks or finishes; the last pump to finish
// ends the session.
func (s *Session) runPump(l *leg) {
	if s.pump(l, s.other(l)) {
		return
	}
	if s.pumps.Add(-1) == 0 {
		s.end()
	}
}

package relay

import (
	"math"
	"time"
	"wsgate/frame"
)

// Timers: keepalive pings, pong_timeout, idle_timeout and close_timeout run
// off each leg's read deadline, at frame boundaries.

// noDeadline: no timer is due.
const noDeadline = math.MaxInt64

// timersDeadline is the next moment l's timers need looking at (since
// session start): the close deadline while closing; otherwise the next
// keepalive ping or pong deadline and the idle deadline.
func (s *Session) timersDeadline(l *leg) int64 {
	if d := l.closeDeadline.Load(); d != 0 {
		return d
	}
	d := int64(noDeadline)
	if s.cfg.PingInterval > 0 {
		if l.pingSent != 0 {
			d = l.pingSent + int64(s.cfg.PongTimeout)
		} else {
			d = l.lastRead + int64(s.cfg.PingInterval)
		}
	}
	if s.cfg.IdleTimeout > 0 {
		d = min(d, s.lastData.Load()+int64(s.cfg.IdleTimeout))
	}
	if s.lifetime != 0 {
		d = min(d, s.lifetime)
	}
	if s.expires != 0 {
		d = min(d, s.expires)
	}
	return d
}

// rearm sets l's read deadline to the next moment the pump must look at its
// timers, or may park.
func (s *Session) rearm(l *leg) {
	for {
		gen := l.gen.Load()
		d := s.timersDeadline(l)
		if p := l.parkDeadline(); p != 0 && l.closeDeadline.Load() == 0 {
			// A park deadline already past is one the pump could not
			// act on: it was inside a frame (a slow sender, or a long
			// write of the frame to the other side). Read on and look
			// again ParkAfter later; a deadline in the past would
			// time every read out at once, without reading, and the
			// pump would spin.
			if now := s.now(); p <= now {
				p = now + int64(ParkAfter)
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
	tickGoOn     tickResult = iota // keep reading (a keepalive ping may have been sent)
	tickClosed                     // the close handshake ran out of time
	tickIdle                       // no data frame either way for idle_timeout
	tickGone                       // no frame at all within pong_timeout of our ping
	tickLifetime                   // the session reached its lifetime (SetLifetime)
	tickExpired                    // the client's credential expired (SetExpiry)
)

// tick runs l's timers after a read on it timed out (or was woken). It sends
// a keepalive ping when one is due; everything else it only reports.
func (s *Session) tick(l *leg) tickResult {
	now := s.now()
	if d := l.closeDeadline.Load(); d != 0 {
		if now >= d {
			return tickClosed
		}
		return tickGoOn
	}
	if s.lifetime != 0 && now >= s.lifetime {
		return tickLifetime
	}
	if s.expires != 0 && now >= s.expires {
		return tickExpired
	}
	if s.cfg.IdleTimeout > 0 && now-s.lastData.Load() >= int64(s.cfg.IdleTimeout) {
		return tickIdle
	}
	if s.cfg.PingInterval > 0 {
		if l.pingSent != 0 {
			// docs/relay.md "Keepalive pings and pong_timeout": no frame at all
			// within pong_timeout after our ping: the
			// leg is gone. Any frame counts (RFC 6455 §5.5.3 lets a peer
			// answer only the latest ping).
			if now-l.pingSent >= int64(s.cfg.PongTimeout) {
				return tickGone
			}
		} else if now-l.lastRead >= int64(s.cfg.PingInterval) {
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
func (s *Session) timer(l *leg) bool {
	return s.act(l, s.tick(l))
}

func (s *Session) act(l *leg, t tickResult) bool {
	switch t {
	case tickClosed:
		return false
	case tickGone:
		s.gone(l)
		return false
	case tickIdle:
		s.apply(evIdle, "gateway")
	case tickLifetime:
		s.apply(evLifetime, "gateway")
	case tickExpired:
		s.apply(evTokenExpired, "gateway")
	}
	s.rearm(l)
	return true
}

// ping sends a keepalive ping on l. It never waits for l's write lock:
// the other pump may hold it for a whole large frame, and waiting would
// stop this pump from reading l meanwhile. It reports whether the ping was
// sent.
func (s *Session) ping(l *leg) bool {
	if !l.wmu.TryLock() {
		return false
	}
	if l.sentClose.Load() || l.dead.Load() {
		l.wmu.Unlock()
		return false
	}
	var fb [frame.MaxHeaderSize + 8]byte
	h := frame.Header{Fin: true, Opcode: frame.OpPing}
	if l.side == SideUpstream {
		h.Masked, h.Key = true, frame.NewKey()
	}
	err := l.writeLocked(frame.AppendFrame(fb[:0], h, l.token[:]), s.cfg.WriteTimeout, time.Now())
	l.wmu.Unlock()
	if err != nil {
		s.gone(l)
	}
	return err == nil
}

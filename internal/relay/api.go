package relay

import (
	"net"
	"time"

	"wsgate/frame"
)

// Run relays until both legs are finished, then calls OnEnd. The
// client→upstream pump runs on the caller's goroutine; either pump may park
// and go on later on another goroutine, so Run may return before the
// session ends.
func (s *Session) Run() { s.relay() }

// Shutdown closes the session for a graceful shutdown: shutdown_close_code
// to the client, 1001 to the upstream (docs/relay.md "Close translation").
func (s *Session) Shutdown() { s.apply(evShutdown, "gateway") }

// Drain closes the session because a reload removed its route or upstream,
// or an admin drained it: 1012 to the client, 1001 to the upstream.
func (s *Session) Drain() { s.apply(evDrained, "gateway") }

// Cut closes both TCP connections under the relay (shutdown_grace is
// over); the pumps then find their legs gone and return. A parked leg
// learns nothing from its closed descriptor (closing it takes it out of the
// poller silently), so its pump is resumed.
func (s *Session) Cut() {
	s.c.closeNow()
	s.u.closeNow()
	s.c.kick()
	s.u.kick()
}

// Start is when the session began.
func (s *Session) Start() time.Time { return s.start }

// Tally is what was read from the leg on side d so far: frames, complete
// messages and payload bytes. Safe to call at any time.
func (s *Session) Tally(d Side) (frames, messages, bytes int64) {
	l := s.leg(d)
	return l.frames.Load(), l.messages.Load(), l.bytes.Load()
}

// CloseSent is the Close frame the gateway got onto the wire toward side d
// (ok false: none). Valid once the session has ended (OnEnd).
func (s *Session) CloseSent(d Side) (code frame.CloseCode, reason string, ok bool) {
	l := s.leg(d)
	return l.sentCode, l.sentWhy, l.sentAny
}

// Outcome is who closed first and why (the access log's closed_by and
// reason), and whether a leg was cut inside a frame.
func (s *Session) Outcome() (closedBy, why string, truncated bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closedBy, s.why, s.truncated
}

// ParkedLegs is how many of the session's legs are parked now (0–2).
func (s *Session) ParkedLegs() int {
	n := 0
	for _, l := range [...]*leg{&s.c, &s.u} {
		if l.parked.Load() {
			n++
		}
	}
	return n
}

func (s *Session) leg(d Side) *leg {
	if d == SideClient {
		return &s.c
	}
	return &s.u
}

// ClientConn is the client's connection as the gateway attached it.
func (s *Session) ClientConn() net.Conn { return s.c.conn }

package relay

import "time"

// SetExpiry makes t the moment the session ends because the client's
// credential ran out (an authentication token's exp): the client gets 1008
// "token expired", the upstream 1001 (docs/relay.md "Close translation").
// The zero Time means never. Call before Run.
//
// It costs nothing per frame: the deadline is one more of the timers a
// leg's read deadline already waits for (timers.go), and a parked leg's
// timer stands in for it (park.go), so an idle session still parks.
func (s *Session) SetExpiry(t time.Time) {
	if t.IsZero() {
		s.expires = 0
		return
	}
	// A deadline already past still ends the session, at its first look.
	s.expires = max(int64(t.Sub(s.start)), 1)
}

package relay

import "time"

// SetLifetime makes the session end d after it started (max_session_lifetime;
// README "Running several instances"): both sides get 1001 "session lifetime
// reached", so that clients reconnect and spread over the instances there
// are now. d <= 0 means never. Call before Run; the caller applies any
// jitter.
//
// It costs nothing per frame: the deadline is one more of the timers a
// leg's read deadline already waits for (timers.go), and a parked leg's
// timer stands in for it (park.go), so an idle session still parks.
func (s *Session) SetLifetime(d time.Duration) {
	if d <= 0 {
		s.lifetime = 0
		return
	}
	s.lifetime = int64(d)
}

package relay

// Per-session rate limits (README "Limits and abuse protection"): messages,
// bytes and frames of one session, and messages_per_ip shared by every
// session of a client address, client -> upstream only.
//
// They are checked when a frame's header has been read and before its
// payload is: with on_exceed: close nothing of an over-limit frame is
// forwarded, and with on_exceed: throttle the pump simply stops reading the
// client until the tokens are there, so TCP backpressure slows the client
// down and nothing is buffered beyond the relay's fixed buffers.
//
//   - frames: one token per frame of any kind except Close (so ping floods
//     and empty continuations are limited too; a client may always close).
//   - messages and messages_per_ip: one token per data message, taken at its
//     first frame, so that the decision comes before any of the message is
//     forwarded, and a throttled message is held back as a whole.
//   - bytes: the payload length of each data frame.

import (
	"net/netip"
	"time"

	"golang.org/x/time/rate"

	"wsgate/frame"
	"wsgate/ratelimit"
)

// Counter counts limit hits (a metric, in the gateway). It is called only
// when a limit is hit, never per frame.
type Counter interface{ Inc() }

// LimitHits are the counters a session bumps when its client goes over a
// limit.
type LimitHits struct {
	Frames, Messages, Bytes, PerIP Counter
}

// Limits are the limits one session's client pump applies. Only that pump
// uses the per-session buckets; PerIP is the route's keyed limiter, shared
// by every session of the client address.
type Limits struct {
	Frames, Messages, Bytes *rate.Limiter // nil: no limit
	PerIP                   *ratelimit.Keyed
	Key                     netip.Addr // the client address's limiter key
	Throttle                bool       // on_exceed: throttle (else close)
	Hits                    LimitHits
}

// limit applies the client's limits to the frame h, whose header has just
// been read from src (the client leg) and whose payload has not. It reports
// false if the frame is over a limit with on_exceed: close: the client has
// been sent 1008 and the upstream 1001, and the caller steps over the
// payload and lingers as after any violation. With on_exceed: throttle it
// waits for the tokens and reports true — also when the wait was cut short
// because the session is closing, which the caller sees on src.
func (s *Session) limit(src *leg, h frame.Header) bool {
	lim := s.lim
	first := h.Opcode == frame.OpText || h.Opcode == frame.OpBinary
	var nbytes int
	if lim.Bytes != nil && h.Opcode.IsData() {
		// A frame is never larger than the burst (config validation);
		// were it so, it costs the whole burst rather than never passing.
		nbytes = int(min(h.Length, int64(lim.Bytes.Burst())))
	}
	var nmsg int
	if first {
		nmsg = 1
	}
	taken, counted := false, false
	for {
		now := time.Now()
		var over Counter
		var wait time.Duration
		if !taken {
			// The session's own buckets: only this pump uses them, so
			// look first and take all or nothing.
			for _, b := range [...]struct {
				lim *rate.Limiter
				n   int
				hit Counter
			}{{lim.Frames, 1, lim.Hits.Frames}, {lim.Messages, nmsg, lim.Hits.Messages}, {lim.Bytes, nbytes, lim.Hits.Bytes}} {
				if b.lim == nil || b.n == 0 {
					continue
				}
				if d := ratelimit.Delay(b.lim, now, b.n); d > wait {
					wait, over = d, b.hit
				}
			}
			if over == nil {
				for _, b := range [...]struct {
					lim *rate.Limiter
					n   int
				}{{lim.Frames, 1}, {lim.Messages, nmsg}, {lim.Bytes, nbytes}} {
					if b.lim != nil && b.n > 0 {
						b.lim.AllowN(now, b.n)
					}
				}
				taken = true
			}
		}
		if over == nil && first && lim.PerIP != nil {
			if ok, retry := lim.PerIP.AllowN(lim.Key, now, 1); !ok {
				over, wait = lim.Hits.PerIP, retry
			}
		}
		if over == nil {
			return true
		}
		if !counted {
			over.Inc()
			counted = true
		}
		if !lim.Throttle {
			s.flush(src) // what was relayed before the limit goes out first
			s.apply(evClientRate, "gateway")
			return false
		}
		if !s.throttle(src, max(wait, time.Millisecond)) {
			return true
		}
	}
}

// throttle stops reading src for d (docs/relay.md: while a leg is throttled,
// its pong and idle timers are suspended). The timers are frozen
// by shifting them by the time waited; the idle clock, which the other pump
// reads too, is pushed forward by d for the wait and set right after it. A
// Close sent to src, or src's end, cuts the wait short (leg.wake): it reports
// false then.
func (s *Session) throttle(src *leg, d time.Duration) bool {
	start := s.now()
	var idle, held int64
	for {
		idle = s.lastData.Load()
		held = idle + int64(d)
		if s.lastData.CompareAndSwap(idle, held) {
			break
		}
	}
	s.flush(src) // frames already relayed must not wait for the throttle
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-src.wakec:
		t.Stop()
	}
	waited := s.now() - start
	src.lastRead += waited
	if src.pingSent != 0 {
		src.pingSent += waited
	}
	// Unless data went the other way meanwhile (the other pump stored its
	// own time), the idle clock resumes where it stopped.
	s.lastData.CompareAndSwap(held, idle+waited)
	if src.sentClose.Load() || src.dead.Load() || src.lost.Load() {
		return false
	}
	s.rearm(src)
	return true
}

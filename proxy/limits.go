package proxy

// Rate limits (docs/relay.md "Rate limits", issue 7): per client address per route
// (handshakes, connections_per_ip, messages_per_ip) and per session
// (messages, bytes, frames), client -> upstream only.
//
// Per session, limits are checked when a frame's header has been read and
// before its payload is: with on_exceed: close nothing of an over-limit frame
// is forwarded, and with on_exceed: throttle the pump simply stops reading the
// client until the tokens are there, so TCP backpressure slows the client down
// and nothing is buffered beyond the relay's fixed buffers.
//
//   - frames: one token per frame of any kind except Close (so ping floods and
//     empty continuations are limited too; a client may always close).
//   - messages and messages_per_ip: one token per data message, taken at its
//     first frame, so that the decision comes before any of the message is
//     forwarded, and a throttled message is held back as a whole.
//   - bytes: the payload length of each data frame.

import (
	"math"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"wsgate/internal/config"
	"wsgate/internal/relay"
	"wsgate/ratelimit"
)

// limiterKeys is the hard cap on the client addresses (IPv6: /64s) one keyed
// limiter remembers: about 15 MiB when an address-rotation flood fills it
// (ratelimit's TestKeyedMillionAddresses measures it). Forgetting an
// address can only give it a fresh bucket, and the limiter forgets the
// fullest buckets first.
const limiterKeys = 1 << 16

// Rate-limit kinds: the `kind` label of wsgate_rate_limited_total.
const (
	kindRequests      = "requests"
	kindHandshakes    = "handshakes"
	kindConnsPerIP    = "connections_per_ip"
	kindMessages      = "messages"
	kindMessagesPerIP = "messages_per_ip"
	kindBytes         = "bytes"
	kindFrames        = "frames"
)

// routeLimits is a route's limiter state. It outlives a reload as long as the
// route (by name) stays: the connection counter always (it counts sessions
// that are open, whatever the new limits say), each keyed limiter as long as
// its rate and burst are unchanged. A changed rate starts with fresh buckets.
type routeLimits struct {
	cfg        config.RateLimits
	requests   *ratelimit.Keyed // non-upgrade HTTP requests; nil: no limit
	handshakes *ratelimit.Keyed // nil: no limit
	perIP      *ratelimit.Keyed // messages_per_ip; nil: no limit
	conns      *ratelimit.Counter
	throttle   bool
	hits       limitHits
}

// limitHits are a route's wsgate_rate_limited_total counters. Each is bound
// at its first hit, so that a route that is never limited exports no series.
type limitHits struct {
	requests, handshakes, conns, messages, perIP, bytes, frames limitHit
}

type limitHit struct {
	vec         *prometheus.CounterVec
	route, kind string
	once        sync.Once
	c           prometheus.Counter
}

func (h *limitHit) Inc() {
	h.once.Do(func() { h.c = h.vec.WithLabelValues(h.route, h.kind) })
	h.c.Inc()
}

// limitRegistry holds the routeLimits of every route of the config in
// force by name, so that a new config snapshot picks up the state of the
// old one (provision).
type limitRegistry struct {
	mu sync.Mutex
	m  map[string]*routeLimits
}

// provision gives the routes of snap, a snapshot about to be swapped in,
// what must outlive a reload, from prev (nil at start): each surviving
// upstream's Backend (active sessions for least_conn, passive health; a
// reload puts drained upstreams back), and each route's limiter state
// where its limits are unchanged. It is the one place where a config
// snapshot becomes the runtime objects handshakes use; routes gone from
// snap are forgotten.
func (g *Gateway) provision(snap, prev *snapshot) {
	reg := &g.limits
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.m == nil {
		reg.m = make(map[string]*routeLimits)
	}
	keep := make(map[string]*routeLimits, len(snap.routes))
	for _, rs := range snap.routes {
		if prev != nil {
			if p := prev.route(rs.cfg.Name); p != nil {
				rs.adopt(p)
			}
		}
		rs.limits = g.newRouteLimits(rs, reg.m[rs.cfg.Name])
		g.shareLimits(rs.limits)
		rs.auth = g.newAuth(rs)
		keep[rs.cfg.Name] = rs.limits
	}
	// Sessions that still run on a removed route keep their own pointers.
	reg.m = keep
}

// newRouteLimits returns rs's limiter state, taking over prev's (the same
// route in the config in force) where the limits are unchanged.
func (g *Gateway) newRouteLimits(rs *routeState, prev *routeLimits) *routeLimits {
	name := rs.cfg.Name
	cfg := rs.cfg.Settings.RateLimit
	rl := &routeLimits{cfg: cfg, throttle: cfg.OnExceed == config.OnExceedThrottle, conns: &ratelimit.Counter{}}
	if prev != nil {
		rl.conns = prev.conns
	}
	rl.requests = keyedFor(cfg.Requests, prev, func(p *routeLimits) (*config.Rate, *ratelimit.Keyed) { return p.cfg.Requests, p.requests })
	rl.handshakes = keyedFor(cfg.Handshakes, prev, func(p *routeLimits) (*config.Rate, *ratelimit.Keyed) { return p.cfg.Handshakes, p.handshakes })
	rl.perIP = keyedFor(cfg.MessagesPerIP, prev, func(p *routeLimits) (*config.Rate, *ratelimit.Keyed) { return p.cfg.MessagesPerIP, p.perIP })
	for _, h := range []struct {
		h    *limitHit
		kind string
	}{{&rl.hits.requests, kindRequests}, {&rl.hits.handshakes, kindHandshakes}, {&rl.hits.conns, kindConnsPerIP}, {&rl.hits.messages, kindMessages},
		{&rl.hits.perIP, kindMessagesPerIP}, {&rl.hits.bytes, kindBytes}, {&rl.hits.frames, kindFrames}} {
		h.h.vec, h.h.route, h.h.kind = g.metrics.RateLimited, name, h.kind
	}
	return rl
}

// keyedFor returns prev's keyed limiter if its rate is the same as r, else a
// new one (nil for no limit).
func keyedFor(r *config.Rate, prev *routeLimits, get func(*routeLimits) (*config.Rate, *ratelimit.Keyed)) *ratelimit.Keyed {
	if r == nil {
		return nil
	}
	if prev != nil {
		if pr, pk := get(prev); pk != nil && reflect.DeepEqual(pr, r) {
			return pk
		}
	}
	return ratelimit.NewKeyed(rate.Limit(r.PerSecond), burstOf(r), limiterKeys)
}

func burstOf(r *config.Rate) int { return int(min(r.Burst, math.MaxInt32)) }

// retryAfter is a Retry-After value for a delay: whole seconds, rounded up
// (RFC 9110 §10.2.3), at least 1.
func retryAfter(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	return strconv.FormatInt(max(s, 1), 10)
}

// headBytes is the size of a request's head as the client sent it, give or
// take optional whitespace: request line, header lines, final CRLF.
func headBytes(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2 + 2
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}

// forSession returns the limits for a new session of the client with limiter
// key key, or nil if the route has none.
func (rl *routeLimits) forSession(key netip.Addr) *relay.Limits {
	c := &rl.cfg
	if c.Frames == nil && c.Messages == nil && c.Bytes == nil && rl.perIP == nil {
		return nil
	}
	l := &relay.Limits{PerIP: rl.perIP, Key: key, Throttle: rl.throttle, Hits: relay.LimitHits{
		Frames: &rl.hits.frames, Messages: &rl.hits.messages, Bytes: &rl.hits.bytes, PerIP: &rl.hits.perIP}}
	bucket := func(r *config.Rate) *rate.Limiter {
		if r == nil {
			return nil
		}
		return rate.NewLimiter(rate.Limit(r.PerSecond), burstOf(r))
	}
	l.Frames, l.Messages, l.Bytes = bucket(c.Frames), bucket(c.Messages), bucket(c.Bytes)
	return l
}

var _ relay.Counter = (*limitHit)(nil)

package proxy

import (
	"strconv"
	"sync"
	"time"
	"wsgate/internal/relay"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Directions of relayed traffic, as metric label values.
const (
	dirClientToUpstream = "client_to_upstream"
	dirUpstreamToClient = "upstream_to_client"
)

// metrics are the gateway's Prometheus metrics (SPEC "Observability").
//
// The relay never touches a metric per frame: each session keeps its own
// tallies (atomics written only by the pump that reads the leg), and the
// collector adds the live sessions' tallies to the totals of finished ones
// when /metrics is scraped. A session leaves the live set and enters the
// totals in one step under mu, so a scrape never misses it nor counts it
// twice, and the counters never go backwards. Label values are bounded:
// route names and configured upstreams (plus HTTP statuses and close
// codes, at most maxAppCloseCodes of them chosen by peers).
type metrics struct {
	reg         *prometheus.Registry
	rejected    *prometheus.CounterVec   // route, status
	dial        *prometheus.HistogramVec // route
	closes      *prometheus.CounterVec   // route, side, code
	rateLimited *prometheus.CounterVec   // route, kind

	mu     sync.Mutex
	routes map[string]*routeStats // by route name; never removed (bounded by the names ever configured)
	// closeSeries caches closes' children, so that a session's end does
	// not hash its labels again: bounded like the series themselves.
	closeSeries map[closeKey]prometheus.Counter
	// appCodes are the application close codes that have a label of their
	// own (see maxAppCloseCodes).
	appCodes map[int]struct{}
}

// closeKey names a wsgate_close_total series; code is -1 for "none".
type closeKey struct {
	route string
	side  relay.Side
	code  int
}

// routeStats are a route's sessions: how many started, what the finished
// ones relayed, and the live ones.
type routeStats struct {
	sessions        float64
	messages, bytes [2]float64 // finished sessions; [0] client→upstream, [1] upstream→client
	live            map[*relay.Session]struct{}
}

func newMetrics(g *Gateway) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_handshake_rejected_total", Help: "Handshakes answered with an HTTP error instead of 101, by route (\"\" when no route matched or the connection was refused before routing) and status.",
		}, []string{"route", "status"}),
		dial: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wsgate_upstream_dial_seconds", Help: "Time to dial and handshake with an upstream, per attempt (failed ones too), by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_close_total", Help: "Session legs ended, by route, the leg the gateway sent the Close frame on (client or upstream), and its code (\"none\" when the leg ended without one; \"other\" for application codes 3000-4999 past the first 64 distinct ones).",
		}, []string{"route", "side", "code"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_rate_limited_total", Help: "Rate-limit hits, by route and kind (handshakes, connections_per_ip, messages, messages_per_ip, bytes, frames).",
		}, []string{"route", "kind"}),
		routes:      make(map[string]*routeStats),
		closeSeries: make(map[closeKey]prometheus.Counter),
		appCodes:    make(map[int]struct{}),
	}
	m.reg.MustRegister(m.rejected, m.dial, m.closes, m.rateLimited,
		&liveCollector{g: g},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// route returns route's stats; the caller holds mu.
func (m *metrics) route(name string) *routeStats {
	r := m.routes[name]
	if r == nil {
		r = &routeStats{live: make(map[*relay.Session]struct{})}
		m.routes[name] = r
	}
	return r
}

// sessionStarted counts s (the client got its 101) and makes it live.
func (m *metrics) sessionStarted(s *relay.Session) {
	m.mu.Lock()
	r := m.route(s.Route)
	r.sessions++
	r.live[s] = struct{}{}
	m.mu.Unlock()
}

// sessionEnded folds a finished session into its route's totals. Its pumps
// are done: nothing writes its tallies or close fields any more.
func (m *metrics) sessionEnded(s *relay.Session) {
	m.mu.Lock()
	r := m.route(s.Route)
	delete(r.live, s)
	addTallies(&r.messages, &r.bytes, s)
	cc, cu := m.closeCounter(s, relay.SideClient), m.closeCounter(s, relay.SideUpstream)
	m.mu.Unlock()
	cc.Inc()
	cu.Inc()
}

// closeCounter returns the close_total series of a finished leg; the caller
// holds mu.
func (m *metrics) closeCounter(s *relay.Session, side relay.Side) prometheus.Counter {
	route := s.Route
	k := closeKey{route: route, side: side, code: -1}
	if code, _, ok := s.CloseSent(side); ok {
		k.code = int(code)
		if isAppCode(k.code) {
			if _, seen := m.appCodes[k.code]; !seen {
				if len(m.appCodes) >= maxAppCloseCodes {
					k.code = otherCode
				} else {
					m.appCodes[k.code] = struct{}{}
				}
			}
		}
	}
	c := m.closeSeries[k]
	if c == nil {
		c = m.closes.WithLabelValues(route, side.String(), closeCodeLabel(k.code))
		m.closeSeries[k] = c
	}
	return c
}

// maxAppCloseCodes bounds the close_total series that application codes
// (3000-4999, RFC 6455 §7.4.2) make: peers choose them, so without a bound a
// client cycling through all 2,000 would add 2,000 series per route and side.
// The first maxAppCloseCodes distinct ones the gateway relays get their own
// label; later ones are counted under code="other". Codes 1000-2999 need no
// bound: the relay passes only the few that RFC 6455 and IANA define.
const maxAppCloseCodes = 64

// otherCode is the closeKey code of the "other" series.
const otherCode = -2

func isAppCode(c int) bool { return c >= 3000 && c <= 4999 }

// closeCodeLabel is the close_total code label of a closeKey code: the Close
// frame the gateway got onto the wire (1005 for one without a code), "none"
// when the leg ended without one, or "other" (see maxAppCloseCodes).
func closeCodeLabel(code int) string {
	switch code {
	case -1:
		return "none"
	case otherCode:
		return "other"
	}
	return strconv.Itoa(code)
}

var (
	descSessions = prometheus.NewDesc("wsgate_sessions_total", "Sessions established (the client got its 101), by route.", []string{"route"}, nil)
	descActive   = prometheus.NewDesc("wsgate_sessions_active", "Open sessions, by route.", []string{"route"}, nil)
	descMessages = prometheus.NewDesc("wsgate_messages_total", "Data messages relayed (final frames of text/binary messages), by route and direction.", []string{"route", "direction"}, nil)
	descBytes    = prometheus.NewDesc("wsgate_bytes_total", "Payload bytes of data frames relayed, by route and direction.", []string{"route", "direction"}, nil)
	descUp       = prometheus.NewDesc("wsgate_upstream_up", "1 if the upstream is in rotation (not backing off after a failed dial, not drained), else 0.", []string{"route", "upstream"}, nil)
)

// liveCollector reports the metrics that are read off the live state at
// scrape time.
type liveCollector struct{ g *Gateway }

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSessions
	ch <- descActive
	ch <- descMessages
	ch <- descBytes
	ch <- descUp
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	m := g.metrics
	type acc struct {
		routeStats
		live []*relay.Session
	}
	per := make(map[string]*acc)
	get := func(route string) *acc {
		a := per[route]
		if a == nil {
			a = &acc{}
			per[route] = a
		}
		return a
	}
	// Routes of the config in force always appear, with zeros, so that
	// rate() and absent() work from a route's first session.
	snap := g.snap.Load()
	for _, r := range snap.routes {
		get(r.cfg.Name)
	}
	// Under mu, only a consistent cut: the totals and which sessions are
	// live. Their tallies are read after, without holding up sessions that
	// start or end: one that ends meanwhile is counted here with what it
	// relayed so far and in the next scrape's totals with all of it, so the
	// sums still never decrease.
	m.mu.Lock()
	for name, r := range m.routes {
		a := get(name)
		a.sessions, a.messages, a.bytes = r.sessions, r.messages, r.bytes
		a.live = make([]*relay.Session, 0, len(r.live))
		for s := range r.live {
			a.live = append(a.live, s)
		}
	}
	m.mu.Unlock()
	for route, a := range per {
		for _, s := range a.live {
			addTallies(&a.messages, &a.bytes, s)
		}
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.CounterValue, a.sessions, route)
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(len(a.live)), route)
		for i, dir := range [2]string{dirClientToUpstream, dirUpstreamToClient} {
			ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, a.messages[i], route, dir)
			ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, a.bytes[i], route, dir)
		}
	}
	now := time.Now()
	for _, r := range snap.routes {
		for _, b := range r.pool.Backends() {
			v := 0.0
			if b.Up(now) {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, v, r.cfg.Name, b.Key)
		}
	}
}

// addTallies adds s's messages and bytes, per direction, to m and b.
func addTallies(m, b *[2]float64, s *relay.Session) {
	_, cm, cb := s.Tally(relay.SideClient)
	_, um, ub := s.Tally(relay.SideUpstream)
	m[0] += float64(cm)
	m[1] += float64(um)
	b[0] += float64(cb)
	b[1] += float64(ub)
}

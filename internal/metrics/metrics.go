// Package metrics holds the gateway's Prometheus metrics (docs/operations.md
// "Metrics").
//
// The relay never touches a metric per frame: each session keeps its own
// tallies, and the collector adds the live sessions' tallies to the totals
// of finished ones when /metrics is scraped. What the collector needs from
// the gateway at scrape time (the routes in force and their upstreams'
// state) comes through a Source callback, so this package imports relay for
// the sessions' tallies and nothing of the gateway.
package metrics

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
	DirClientToUpstream = "client_to_upstream"
	DirUpstreamToClient = "upstream_to_client"
)

// Metrics are one gateway's Prometheus metrics. Each session keeps its own
// tallies (atomics written only by the pump that reads the leg), and the
// collector adds the live sessions' tallies to the totals of finished ones
// when /metrics is scraped. A session leaves the live set and enters the
// totals in one step under mu, so a scrape never misses it nor counts it
// twice, and the counters never go backwards. Label values are bounded:
// route names and configured upstreams (plus HTTP statuses and close
// codes, at most MaxAppCloseCodes of them chosen by peers).
type Metrics struct {
	Registry    *prometheus.Registry
	Rejected    *prometheus.CounterVec   // route, status
	Dial        *prometheus.HistogramVec // route
	closes      *prometheus.CounterVec   // route, side, code
	RateLimited *prometheus.CounterVec   // route, kind
	// HTTPRequests and HTTPSeconds count the non-upgrade requests proxied
	// on `http: proxy` routes (README "Putting wsgate in front of an
	// application").
	HTTPRequests *prometheus.CounterVec   // route, code
	HTTPSeconds  *prometheus.HistogramVec // route
	auth         authMetrics              // wsgate_auth_total (auth.go)
	src          Source

	mu     sync.Mutex
	routes map[string]*routeStats // by route name; never removed (bounded by the names ever configured)
	// closeSeries caches closes' children, so that a session's end does
	// not hash its labels again: bounded like the series themselves.
	closeSeries map[closeKey]prometheus.Counter
	// appCodes are the application close codes that have a label of their
	// own (see MaxAppCloseCodes).
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
	// compressed messages and their inflated bytes (permessage-deflate),
	// finished sessions, as messages and bytes.
	compressed, inflated [2]float64
	live                 map[*relay.Session]struct{}
}

// Route is a route of the config in force, as a scrape sees it.
type Route struct {
	Name      string
	Upstreams []Upstream
}

// Upstream is one of a route's upstreams: its configured URL and whether it
// is in rotation.
type Upstream struct {
	Key string
	Up  bool
}

// Source returns the routes of the config in force, at scrape time.
type Source func(now time.Time) []Route

// New returns the metrics of a gateway whose routes src reports.
func New(src Source) *Metrics {
	m := &Metrics{
		src:      src,
		Registry: prometheus.NewRegistry(),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_handshake_rejected_total", Help: "Handshakes answered with an HTTP error instead of 101, by route (\"\" when no route matched or the connection was refused before routing) and status.",
		}, []string{"route", "status"}),
		Dial: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wsgate_upstream_dial_seconds", Help: "Time to dial and handshake with an upstream, per attempt (failed ones too), by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_close_total", Help: "Session legs ended, by route, the leg the gateway sent the Close frame on (client or upstream), and its code (\"none\" when the leg ended without one; \"other\" for application codes 3000-4999 past the first 64 distinct ones).",
		}, []string{"route", "side", "code"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_rate_limited_total", Help: "Rate-limit hits, by route and kind (requests, handshakes, connections_per_ip, messages, messages_per_ip, bytes, frames).",
		}, []string{"route", "kind"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_http_requests_total", Help: "HTTP requests (not WebSocket upgrades) answered on http: proxy routes, by route and status code (the gateway's own answers too: 413, 429, 502, 504).",
		}, []string{"route", "code"}),
		HTTPSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wsgate_http_request_seconds", Help: "Duration of proxied HTTP requests, from the request to the end of the response body, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		routes:      make(map[string]*routeStats),
		closeSeries: make(map[closeKey]prometheus.Counter),
		appCodes:    make(map[int]struct{}),
	}
	m.Registry.MustRegister(m.Rejected, m.Dial, m.closes, m.RateLimited, m.HTTPRequests, m.HTTPSeconds,
		&liveCollector{m: m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// route returns route's stats; the caller holds mu.
func (m *Metrics) route(name string) *routeStats {
	r := m.routes[name]
	if r == nil {
		r = &routeStats{live: make(map[*relay.Session]struct{})}
		m.routes[name] = r
	}
	return r
}

// SessionStarted counts s (the client got its 101) and makes it live.
func (m *Metrics) SessionStarted(s *relay.Session) {
	m.mu.Lock()
	r := m.route(s.Route)
	r.sessions++
	r.live[s] = struct{}{}
	m.mu.Unlock()
}

// SessionEnded folds a finished session into its route's totals. Its pumps
// are done: nothing writes its tallies or close fields any more.
func (m *Metrics) SessionEnded(s *relay.Session) {
	m.mu.Lock()
	r := m.route(s.Route)
	delete(r.live, s)
	addTallies(&r.messages, &r.bytes, s)
	addInflated(&r.compressed, &r.inflated, s)
	cc, cu := m.closeCounter(s, relay.SideClient), m.closeCounter(s, relay.SideUpstream)
	m.mu.Unlock()
	cc.Inc()
	cu.Inc()
}

// closeCounter returns the close_total series of a finished leg; the caller
// holds mu.
func (m *Metrics) closeCounter(s *relay.Session, side relay.Side) prometheus.Counter {
	route := s.Route
	k := closeKey{route: route, side: side, code: -1}
	if code, _, ok := s.CloseSent(side); ok {
		k.code = int(code)
		if isAppCode(k.code) {
			if _, seen := m.appCodes[k.code]; !seen {
				if len(m.appCodes) >= MaxAppCloseCodes {
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

// MaxAppCloseCodes bounds the close_total series that application codes
// (3000-4999, RFC 6455 §7.4.2) make: peers choose them, so without a bound a
// client cycling through all 2,000 would add 2,000 series per route and side.
// The first MaxAppCloseCodes distinct ones the gateway relays get their own
// label; later ones are counted under code="other". Codes 1000-2999 need no
// bound: the relay passes only the few that RFC 6455 and IANA define.
const MaxAppCloseCodes = 64

// otherCode is the closeKey code of the "other" series.
const otherCode = -2

func isAppCode(c int) bool { return c >= 3000 && c <= 4999 }

// closeCodeLabel is the close_total code label of a closeKey code: the Close
// frame the gateway got onto the wire (1005 for one without a code), "none"
// when the leg ended without one, or "other" (see MaxAppCloseCodes).
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
	descSessions   = prometheus.NewDesc("wsgate_sessions_total", "Sessions established (the client got its 101), by route.", []string{"route"}, nil)
	descActive     = prometheus.NewDesc("wsgate_sessions_active", "Open sessions, by route.", []string{"route"}, nil)
	descMessages   = prometheus.NewDesc("wsgate_messages_total", "Data messages relayed (final frames of text/binary messages), by route and direction.", []string{"route", "direction"}, nil)
	descBytes      = prometheus.NewDesc("wsgate_bytes_total", "Payload bytes of data frames relayed, by route and direction.", []string{"route", "direction"}, nil)
	descCompressed = prometheus.NewDesc("wsgate_compressed_messages_total", "Compressed (permessage-deflate) data messages relayed and checked by inflation, by route and direction.", []string{"route", "direction"}, nil)
	descInflated   = prometheus.NewDesc("wsgate_inflated_bytes_total", "Bytes the compressed messages inflated to when the gateway checked them, by route and direction (wsgate_bytes_total counts them as sent, compressed).", []string{"route", "direction"}, nil)
	descUp         = prometheus.NewDesc("wsgate_upstream_up", "1 if the upstream is in rotation (not backing off after a failed dial, not drained), else 0.", []string{"route", "upstream"}, nil)
)

// liveCollector reports the metrics that are read off the live state at
// scrape time.
type liveCollector struct{ m *Metrics }

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSessions
	ch <- descActive
	ch <- descMessages
	ch <- descBytes
	ch <- descCompressed
	ch <- descInflated
	ch <- descUp
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	routes := m.src(time.Now())
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
	for _, r := range routes {
		get(r.Name)
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
		a.compressed, a.inflated = r.compressed, r.inflated
		a.live = make([]*relay.Session, 0, len(r.live))
		for s := range r.live {
			a.live = append(a.live, s)
		}
	}
	m.mu.Unlock()
	for route, a := range per {
		for _, s := range a.live {
			addTallies(&a.messages, &a.bytes, s)
			addInflated(&a.compressed, &a.inflated, s)
		}
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.CounterValue, a.sessions, route)
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(len(a.live)), route)
		for i, dir := range [2]string{DirClientToUpstream, DirUpstreamToClient} {
			ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, a.messages[i], route, dir)
			ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, a.bytes[i], route, dir)
			ch <- prometheus.MustNewConstMetric(descCompressed, prometheus.CounterValue, a.compressed[i], route, dir)
			ch <- prometheus.MustNewConstMetric(descInflated, prometheus.CounterValue, a.inflated[i], route, dir)
		}
	}
	for _, r := range routes {
		for _, u := range r.Upstreams {
			v := 0.0
			if u.Up {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, v, r.Name, u.Key)
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

// addInflated adds s's compressed messages and their inflated bytes, per
// direction, to m and b.
func addInflated(m, b *[2]float64, s *relay.Session) {
	cm, cb := s.Inflated(relay.SideClient)
	um, ub := s.Inflated(relay.SideUpstream)
	m[0] += float64(cm)
	m[1] += float64(um)
	b[0] += float64(cb)
	b[1] += float64(ub)
}

// EachLive calls f for every live session (under the metrics' lock: f must
// not start or end sessions).
func (m *Metrics) EachLive(f func(s *relay.Session)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.routes {
		for s := range r.live {
			f(s)
		}
	}
}

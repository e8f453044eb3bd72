package proxy

import (
	"strconv"
	"sync"
	"time"

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
// tallies (atomics written only by the pump that owns them, so no cache line
// is shared between sessions), and the collector adds the live sessions'
// tallies to the totals of finished ones when /metrics is scraped. Label
// values are bounded: route names and configured upstreams only.
type metrics struct {
	reg         *prometheus.Registry
	sessions    *prometheus.CounterVec   // route
	rejected    *prometheus.CounterVec   // route, status
	dial        *prometheus.HistogramVec // route
	closes      *prometheus.CounterVec   // route, side, code
	rateLimited *prometheus.CounterVec   // route, kind

	mu       sync.Mutex
	finished map[string]*routeTally // by route name
}

// routeTally is what finished sessions of a route relayed.
type routeTally struct {
	messages, bytes [2]float64 // [0] client→upstream, [1] upstream→client
}

func newMetrics(g *Gateway) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_sessions_total", Help: "Sessions established (client got its 101), by route.",
		}, []string{"route"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_handshake_rejected_total", Help: "Handshakes answered with an HTTP error instead of 101, by route (\"\" when no route matched or the HTTP server refused it) and status.",
		}, []string{"route", "status"}),
		dial: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wsgate_upstream_dial_seconds", Help: "Time to dial and handshake with an upstream, per attempt, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_close_total", Help: "Session legs ended, by route, the leg the gateway sent the Close frame on (client or upstream), and its code (\"none\" when the leg ended without one).",
		}, []string{"route", "side", "code"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_rate_limited_total", Help: "Rate-limit hits, by route and kind (handshakes, connections_per_ip, messages, messages_per_ip, bytes, frames).",
		}, []string{"route", "kind"}),
		finished: make(map[string]*routeTally),
	}
	m.reg.MustRegister(m.sessions, m.rejected, m.dial, m.closes, m.rateLimited,
		&liveCollector{g: g},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// sessionEnded folds a finished session into the totals.
func (m *metrics) sessionEnded(s *session) {
	m.mu.Lock()
	t := m.finished[s.route]
	if t == nil {
		t = &routeTally{}
		m.finished[s.route] = t
	}
	t.messages[0] += float64(s.c.messages.Load())
	t.messages[1] += float64(s.u.messages.Load())
	t.bytes[0] += float64(s.c.bytes.Load())
	t.bytes[1] += float64(s.u.bytes.Load())
	m.mu.Unlock()
	for _, l := range []*leg{&s.c, &s.u} {
		code := "none"
		if l.sentAny {
			code = strconv.Itoa(int(l.sentCode))
		}
		m.closes.WithLabelValues(s.route, l.side.String(), code).Inc()
	}
}

var (
	descActive   = prometheus.NewDesc("wsgate_sessions_active", "Open sessions, by route.", []string{"route"}, nil)
	descMessages = prometheus.NewDesc("wsgate_messages_total", "Data messages relayed, by route and direction.", []string{"route", "direction"}, nil)
	descBytes    = prometheus.NewDesc("wsgate_bytes_total", "Payload bytes of data frames relayed, by route and direction.", []string{"route", "direction"}, nil)
	descUp       = prometheus.NewDesc("wsgate_upstream_up", "1 if the upstream is in rotation (not backing off after a failed dial, not drained), else 0.", []string{"route", "upstream"}, nil)
)

// liveCollector reports the metrics that are read off the live state at
// scrape time.
type liveCollector struct{ g *Gateway }

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descActive
	ch <- descMessages
	ch <- descBytes
	ch <- descUp
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	m := g.metrics
	type acc struct {
		active          float64
		messages, bytes [2]float64
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
	// Routes of the config in force always appear, with zeros.
	snap := g.snap.Load()
	for _, r := range snap.routes {
		get(r.cfg.Name)
	}
	m.mu.Lock()
	for route, t := range m.finished {
		a := get(route)
		a.messages, a.bytes = t.messages, t.bytes
	}
	m.mu.Unlock()
	for _, s := range g.reg.list() {
		a := get(s.route)
		a.active++
		a.messages[0] += float64(s.c.messages.Load())
		a.messages[1] += float64(s.u.messages.Load())
		a.bytes[0] += float64(s.c.bytes.Load())
		a.bytes[1] += float64(s.u.bytes.Load())
	}
	for route, a := range per {
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, a.active, route)
		for i, dir := range []string{dirClientToUpstream, dirUpstreamToClient} {
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

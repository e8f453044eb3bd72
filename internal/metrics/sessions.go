package metrics

import "github.com/prometheus/client_golang/prometheus"

// SessionsAPI are the sessions API's metrics (README "Sessions API and
// events"). Label values are bounded: route names, two events, three
// results.
type SessionsAPI struct {
	Pushed *prometheus.CounterVec // route
	Events *prometheus.CounterVec // route, event, result
}

// NewSessionsAPI registers the sessions API's metrics with m's registry.
func (m *Metrics) NewSessionsAPI() *SessionsAPI {
	s := &SessionsAPI{
		Pushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_pushed_messages_total", Help: "Messages pushed through the sessions API (POST /sessions/{id}/messages, POST /broadcast) that reached the client's connection, by route.",
		}, []string{"route"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_events_total", Help: "Session events (connect, disconnect) by route, event and result: ok (the receiver answered 2xx), failed (every attempt failed), dropped (the event queue was full).",
		}, []string{"route", "event", "result"}),
	}
	m.Registry.MustRegister(s.Pushed, s.Events)
	return s
}

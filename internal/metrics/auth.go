package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// authMetrics is wsgate_auth_total, registered at the first check: a
// gateway without auth exports no such series.
type authMetrics struct {
	once sync.Once
	vec  *prometheus.CounterVec
}

// AuthResult counts one authentication check on route; result is ok,
// missing, invalid, expired, denied or error (README "Authentication").
func (m *Metrics) AuthResult(route, result string) {
	a := &m.auth
	a.once.Do(func() {
		a.vec = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_auth_total",
			Help: "Authentication checks at the edge, by route and result (ok, missing, invalid, expired, denied, error).",
		}, []string{"route", "result"})
		m.Registry.MustRegister(a.vec)
	})
	a.vec.WithLabelValues(route, result).Inc()
}

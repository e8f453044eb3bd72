package proxy

// Helpers of the abuse-protection tests (issue 7): clients that connect from
// a chosen 127.0.0.x address, optionally after a PROXY protocol header, and
// configs with rate limits.

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// limitYAML is relayYAML with a rate_limit block (a YAML flow mapping such
// as "{handshakes: {rate: 1/m, burst: 2}}") under defaults.
func limitYAML(upstream, rateLimit string, kv ...string) string {
	if rateLimit != "" {
		kv = append(kv, "rate_limit", rateLimit)
	}
	return relayYAML(upstream, kv...)
}

// rateHits is the value of wsgate_rate_limited_total{route,kind}.
func rateHits(g *Gateway, route, kind string) float64 {
	return counterValue(g.metrics.RateLimited.WithLabelValues(route, kind))
}

// rejections is the value of wsgate_handshake_rejected_total{route,status}.
func rejections(g *Gateway, route, status string) float64 {
	return counterValue(g.metrics.Rejected.WithLabelValues(route, status))
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// echoUpstream is an upstream that answers every handshake and echoes
// data, answers pings, records the requests (headers included).
func echoUpstream(t testing.TB) *testUpstream {
	return newUpstream(t, "echo", nil)
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }

// eventually waits up to relayIO for cond.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(relayIO)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package proxy

// Several instances (README "Running several instances"): the limits that
// are summed over the cluster ask internal/cluster at the handshake, and
// fall back to this instance's own limiters while Redis is away (fail:
// open); with fail: closed, handshakes get 503 then. The relay itself never
// waits for Redis: messages_per_ip stays on the local keyed limiter, whose
// consumption the cluster exchanges in the background.

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"time"

	"github.com/caddyserver/certmagic"

	"wsgate/internal/cluster"
	"wsgate/internal/config"
)

// clusterOpTimeout bounds a Redis operation on a handshake's path (tests
// on a loaded machine raise it in an init function).
var clusterOpTimeout = cluster.DefaultOpTimeout

// joinCluster connects to the cluster's Redis, if the config has one.
func (g *Gateway) joinCluster(cfg *config.Config) error {
	cc := &cfg.Cluster
	if !cc.Enabled() {
		return nil
	}
	c, err := cluster.New(cluster.Options{
		URL: cc.Redis, Password: cc.Password, Node: cc.Node, FailClosed: cc.Fail == config.FailClosed,
		OpTimeout: clusterOpTimeout, Log: g.log, Registerer: g.metrics.Registry,
	})
	if err != nil {
		return err
	}
	c.SetSources(cluster.Sources{Conns: g.clusterConns, PerIP: g.clusterPerIP})
	g.cluster = c
	return nil
}

// leaveCluster closes the connection to Redis (when Serve returns).
func (g *Gateway) leaveCluster() {
	if g.cluster != nil {
		g.cluster.Close()
	}
}

// clusterConns yields the open sessions per route and client key, for the
// routes with connections_per_ip: what this instance writes back to Redis.
func (g *Gateway) clusterConns(yield func(route string, key netip.Addr, n int)) {
	snap := g.snap.Load()
	if snap == nil {
		return // New has not stored the first config yet
	}
	for _, rs := range snap.routes {
		if rs.limits != nil && rs.limits.cfg.ConnectionsPerIP > 0 {
			rs.limits.conns.Each(func(key netip.Addr, n int) { yield(rs.cfg.Name, key, n) })
		}
	}
}

// clusterPerIP lists the messages_per_ip limiters of the config in force.
func (g *Gateway) clusterPerIP() []cluster.PerIPSource {
	var out []cluster.PerIPSource
	snap := g.snap.Load()
	if snap == nil {
		return nil
	}
	for _, rs := range snap.routes {
		if rl := rs.limits; rl != nil && rl.perIP != nil {
			r := rl.cfg.MessagesPerIP
			out = append(out, cluster.PerIPSource{Route: rs.cfg.Name, Limiter: rl.perIP,
				Rate: cluster.Rate{PerSecond: r.PerSecond, Burst: int64(burstOf(r))}})
		}
	}
	return out
}

// shareLimits makes rl's messages_per_ip limiter report its consumption,
// when the gateway is part of a cluster (provision).
func (g *Gateway) shareLimits(rl *routeLimits) {
	if g.cluster != nil && rl.perIP != nil {
		rl.perIP.Track()
	}
}

// clusterRefuses answers 503 while the cluster's Redis is away and the
// config says fail: closed. It reports whether it did.
func (g *Gateway) clusterRefuses(w http.ResponseWriter, r *http.Request, route string) bool {
	c := g.cluster
	if c == nil || !c.FailClosed() || c.Up() {
		return false
	}
	g.refuse(w, r, route, http.StatusServiceUnavailable, "cluster store unavailable (cluster.fail: closed)",
		"Retry-After", "1")
	return true
}

// allowHandshake takes a token of the route's handshakes limit for key:
// from the cluster's bucket, or this instance's while Redis is away (a
// failed operation is decided locally too).
func (g *Gateway) allowHandshake(ctx context.Context, rs *routeState, key netip.Addr) (bool, time.Duration) {
	rl := rs.limits
	if c := g.cluster; c != nil && c.Up() {
		hr := rl.cfg.Handshakes
		v, retry, err := c.Admit(ctx, rs.cfg.Name, key, &cluster.Rate{PerSecond: hr.PerSecond, Burst: int64(burstOf(hr))}, 0)
		if err == nil {
			return v == cluster.Admitted, retry
		}
	}
	return rl.handshakes.AllowN(key, time.Now(), 1)
}

// acquireConn takes a connections_per_ip slot for key: counted over the
// cluster, or on this instance alone while Redis is away. The local count
// is kept either way (it is what this instance writes back to Redis).
func (g *Gateway) acquireConn(ctx context.Context, rs *routeState, key netip.Addr) bool {
	rl := rs.limits
	max := rl.cfg.ConnectionsPerIP
	if c := g.cluster; c != nil && max > 0 && c.Up() {
		v, _, err := c.Admit(ctx, rs.cfg.Name, key, nil, max)
		if err == nil {
			if v != cluster.Admitted {
				return false
			}
			rl.conns.Acquire(key, 0)
			return true
		}
	}
	return rl.conns.Acquire(key, max)
}

// releaseConn gives back what acquireConn took.
func (g *Gateway) releaseConn(rs *routeState, key netip.Addr) {
	rl := rs.limits
	rl.conns.Release(key)
	if g.cluster != nil && rl.cfg.ConnectionsPerIP > 0 {
		g.cluster.Release(rs.cfg.Name, key)
	}
}

// lifetimeOf is a session's max_session_lifetime with jitter, so that
// sessions opened together do not all reconnect together; 0 stays 0. The
// jitter is ±9 %: within the documented ±10 % with room for what a client
// measures from its side (its clock starts before or after ours by a
// round trip).
func lifetimeOf(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(float64(d) * (0.91 + 0.18*rand.Float64()))
}

// certStorage is where ACME keeps its account and certificates: in the
// cluster's Redis with cluster.certificates, else nil (tls.acme.storage).
func (g *Gateway) certStorage() certmagic.Storage {
	if g.cluster == nil || !g.Config().Cluster.Certificates {
		return nil
	}
	return g.cluster.Storage()
}

// ClusterBus is the message bus between the instances of the cluster, for
// the sessions API across instances; nil when the gateway runs alone.
func (g *Gateway) ClusterBus() cluster.Bus {
	if g.cluster == nil {
		return nil
	}
	return g.cluster
}

package proxy

import (
	"net/http"
	"reflect"
	"strconv"
	"time"
)

// Reload swaps in a new config (SIGHUP; SPEC "Reload without dropping
// sessions"). cfg has been loaded and validated off to the side. Sessions
// keep the snapshot they started with; only those whose route (by name) or
// upstream is gone are drained, with 1012 to the client and 1001 upstream,
// spread over close_spread. `server:` changes need a restart: the old values
// stay and a warning is logged. Static certificate files are read again.
func (g *Gateway) Reload(cfg *Config) error {
	old := g.snap.Load()
	if !reflect.DeepEqual(old.cfg.Server, cfg.Server) {
		g.log.Warn().Msg("reload: server settings changed; they take effect only after a restart")
		c := *cfg
		c.Server = old.cfg.Server
		cfg = &c
	}
	snap, err := buildSnapshot(cfg)
	if err != nil {
		return err
	}
	// Keep each surviving upstream's Backend (active sessions for
	// least_conn, passive health); a reload puts drained upstreams back.
	for _, rs := range snap.routes {
		prev := old.route(rs.cfg.Name)
		if prev == nil {
			continue
		}
		rs.adopt(prev)
	}
	if g.tlsOn() {
		certs, err := loadCertificates(cfg.TLS.Certificates)
		if err != nil {
			return err
		}
		g.tls.certs.Store(certs)
		g.reloadACME(cfg)
	}
	g.snap.Store(snap)
	var gone []*session
	for _, s := range g.reg.list() {
		rs := snap.route(s.route)
		if rs == nil || rs.backend(s.upstream) == nil {
			gone = append(gone, s)
		}
	}
	g.log.Info().Int("routes", len(cfg.Routes)).Int("drained_sessions", len(gone)).Msg("config reloaded")
	g.spreadClose(gone, evDrained)
	return nil
}

func (g *Gateway) tlsOn() bool { return g.tls.certs.Load() != nil }

// route returns the route named name, or nil.
func (snap *snapshot) route(name string) *routeState {
	for _, rs := range snap.routes {
		if rs.cfg.Name == name {
			return rs
		}
	}
	return nil
}

// backend returns the route's backend for an upstream key, or nil.
func (rs *routeState) backend(key string) *Backend {
	for b := range rs.upstream {
		if b.Key == key {
			return b
		}
	}
	return nil
}

// adopt takes over prev's Backend objects for the upstreams both have, so
// that counts and health survive a reload. Drain marks are cleared.
func (rs *routeState) adopt(prev *routeState) {
	var backends []*Backend
	for _, b := range rs.pool.Backends() {
		nb := b
		if pb := prev.backend(b.Key); pb != nil && pb.Weight == b.Weight {
			nb = pb
			nb.SetDrained(false)
			rs.upstream[nb] = rs.upstream[b]
			if nb != b {
				delete(rs.upstream, b)
			}
		}
		backends = append(backends, nb)
	}
	rs.pool = NewPool(rs.pool.Balance(), backends)
}

// spreadClose sends ev's close frames to every session in list, spread evenly
// over close_spread so that clients do not all reconnect at once.
func (g *Gateway) spreadClose(list []*session, ev event) {
	spread := g.Config().Server.CloseSpread
	for i, s := range list {
		if len(list) == 1 || spread <= 0 {
			s.apply(ev, "gateway")
			continue
		}
		at := time.Duration(int64(spread) * int64(i) / int64(len(list)))
		time.AfterFunc(at, func() { s.apply(ev, "gateway") })
	}
}

// drainHandler serves POST /drain?route=NAME or ?upstream=URL on the admin
// listener: those sessions get 1012/1001, spread over close_spread, and a
// drained upstream leaves the rotation until the next reload.
func (g *Gateway) drainHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	route, upstream := r.URL.Query().Get("route"), r.URL.Query().Get("upstream")
	if (route == "") == (upstream == "") {
		http.Error(w, "give exactly one of ?route=NAME or ?upstream=URL", http.StatusBadRequest)
		return
	}
	snap := g.snap.Load()
	found := false
	if route != "" {
		found = snap.route(route) != nil
	} else {
		for _, rs := range snap.routes {
			if b := rs.backend(upstream); b != nil {
				b.SetDrained(true)
				found = true
			}
		}
	}
	if !found {
		http.Error(w, "no such route or upstream in the config in force", http.StatusNotFound)
		return
	}
	var list []*session
	for _, s := range g.reg.list() {
		if (route != "" && s.route == route) || (upstream != "" && s.upstream == upstream) {
			list = append(list, s)
		}
	}
	g.log.Info().Str("route", route).Str("upstream", upstream).Int("sessions", len(list)).Msg("drain")
	g.spreadClose(list, evDrained)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("draining " + strconv.Itoa(len(list)) + " sessions\n"))
}

package proxy

import (
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"wsgate/internal/balance"
	"wsgate/internal/certs"
	"wsgate/internal/config"
	"wsgate/internal/relay"
)

// Reload swaps in a new config (SIGHUP; docs/relay.md "Reload without dropping
// sessions"). cfg has been loaded and validated off to the side. Sessions
// keep the snapshot they started with; only those whose route (by name) or
// upstream is gone are drained, with 1012 to the client and 1001 upstream,
// spread over close_spread. Settings that need a restart (`server:`, and
// the logger and TLS listener built from log.level, log.format and
// tls.min_version) keep their old values, with a warning naming them.
// Static certificate files are read again. On error nothing changed.
func (g *Gateway) Reload(cfg *config.Config) error {
	g.lifecycle.Lock()
	defer g.lifecycle.Unlock()
	if g.draining.Load() {
		// The shutdown is closing every session already; a reload could
		// only race it.
		return errors.New("the gateway is shutting down: reload ignored")
	}
	old := g.snap.Load()
	keys, cfg := restartOnly(old.cfg, cfg)
	snap, err := buildSnapshot(cfg)
	if err != nil {
		return err
	}
	// Certificates before anything is changed: if the files no longer
	// load, the reload fails as a whole.
	var static *certs.Set
	if g.tlsOn() {
		if static, err = certs.LoadStatic(cfg.TLS.Certificates); err != nil {
			return err
		}
	}
	if len(keys) > 0 {
		g.log.Warn().Strs("keys", keys).Msg("reload: settings that need a restart changed; their old values stay in force")
	}
	g.provision(snap, old)
	if static != nil {
		g.tls.certs.Store(static)
		g.reloadACME(cfg)
	}
	g.snap.Store(snap)
	old.closeIdle()
	var gone []*relay.Session
	for _, s := range g.reg.list() {
		rs := snap.route(s.Route)
		if rs == nil || rs.backend(s.Upstream) == nil {
			gone = append(gone, s)
		}
	}
	g.log.Info().Int("routes", len(cfg.Routes)).Int("drained_sessions", len(gone)).Msg("config reloaded")
	g.spreadClose(gone, (*relay.Session).Drain)
	return nil
}

// restartOnly returns the dotted keys whose new values a reload cannot
// apply, and cfg with their old values put back. `server:` holds the
// listeners and the shutdown settings (docs/relay.md "Reload and drain": they need a restart); the
// logger and the TLS listener's config are built once at start.
func restartOnly(old, cfg *config.Config) ([]string, *config.Config) {
	keys := changedKeys("server", reflect.ValueOf(old.Server), reflect.ValueOf(cfg.Server))
	keys = append(keys, changedKeys("cluster", reflect.ValueOf(old.Cluster), reflect.ValueOf(cfg.Cluster))...)
	if old.Log.Level != cfg.Log.Level {
		keys = append(keys, "log.level")
	}
	if old.Log.Format != cfg.Log.Format {
		keys = append(keys, "log.format")
	}
	if old.TLS.MinVersion != cfg.TLS.MinVersion {
		keys = append(keys, "tls.min_version")
	}
	if len(keys) == 0 {
		return nil, cfg
	}
	c := *cfg
	c.Server = old.Server
	c.Cluster = old.Cluster // the connection to Redis is made once (cluster.go)
	c.Log.Level, c.Log.Format = old.Log.Level, old.Log.Format
	c.TLS.MinVersion = old.TLS.MinVersion
	return keys, &c
}

// changedKeys lists the fields of two structs of the same type that differ,
// as config keys under prefix ("server.shutdown_grace").
func changedKeys(prefix string, a, b reflect.Value) []string {
	var keys []string
	for i := 0; i < a.NumField(); i++ {
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			keys = append(keys, prefix+"."+snakeCase(a.Type().Field(i).Name))
		}
	}
	return keys
}

// snakeCase turns a Go field name into its config key: TLSListen ->
// tls_listen, MaxPendingPerIP -> max_pending_per_ip.
func snakeCase(name string) string {
	var b strings.Builder
	for i, r := range name {
		upper := unicode.IsUpper(r)
		if upper && i > 0 {
			prevLower := unicode.IsLower(rune(name[i-1]))
			nextLower := i+1 < len(name) && unicode.IsLower(rune(name[i+1]))
			if prevLower || (unicode.IsUpper(rune(name[i-1])) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
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
func (rs *routeState) backend(key string) *balance.Backend {
	for b := range rs.configOf {
		if b.Key == key {
			return b
		}
	}
	return nil
}

// adopt takes over prev's Backend objects for the upstreams both have, so
// that counts and health survive a reload. Drain marks are cleared.
func (rs *routeState) adopt(prev *routeState) {
	var backends []*balance.Backend
	for _, b := range rs.pool.Backends() {
		nb := b
		if pb := prev.backend(b.Key); pb != nil && pb.Weight == b.Weight {
			nb = pb
			nb.SetDrained(false)
			rs.configOf[nb] = rs.configOf[b]
			if nb != b {
				delete(rs.configOf, b)
			}
		}
		backends = append(backends, nb)
	}
	rs.pool = balance.NewPool(rs.pool.Balance(), backends)
	rs.setSticky()
}

// spreadClose sends ev's close frames to every session in list, spread evenly
// over close_spread so that clients do not all reconnect at once. Each
// close runs on its own goroutine: a session whose peer does not read may
// hold its write lock for up to write_timeout, and must not hold up the
// others (or the shutdown waiting for them).
func (g *Gateway) spreadClose(list []*relay.Session, close func(*relay.Session)) {
	spread := g.Config().Server.CloseSpread
	for i, s := range list {
		var at time.Duration
		if len(list) > 1 && spread > 0 {
			at = time.Duration(int64(spread) * int64(i) / int64(len(list)))
		}
		time.AfterFunc(at, func() { close(s) })
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
	g.lifecycle.Lock()
	defer g.lifecycle.Unlock()
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
	var list []*relay.Session
	for _, s := range g.reg.list() {
		if (route != "" && s.Route == route) || (upstream != "" && s.Upstream == upstream) {
			list = append(list, s)
		}
	}
	g.log.Info().Str("route", route).Str("upstream", upstream).Int("sessions", len(list)).Msg("drain")
	g.spreadClose(list, (*relay.Session).Drain)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("draining " + strconv.Itoa(len(list)) + " sessions\n"))
}

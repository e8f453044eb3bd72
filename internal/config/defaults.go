package config

import (
	"slices"
	"sort"
	"strings"
	"time"
	"wsgate/internal/config/yamlwalk"

	"gopkg.in/yaml.v3"
)

// Built-in defaults, the document walk and the result.

// ---------------------------------------------------------------------------
// The document.

var (
	topKeys    = []string{"server", "tls", "log", "cluster", "defaults", "routes"}
	serverKeys = []string{"listen", "tls_listen", "admin_listen", "trusted_proxies", "proxy_protocol",
		"max_connections", "handshake_timeout", "max_header_bytes", "max_pending_per_ip",
		"upstream_failure_code", "shutdown_grace", "shutdown_close_code", "close_spread",
		"session_id_header", "admin_token_file"}
	tlsKeys      = []string{"acme", "certificates", "min_version"}
	acmeKeys     = []string{"email", "ca", "ca_root", "agree_terms", "storage"}
	certKeys     = []string{"cert", "key"}
	logKeys      = []string{"level", "format", "access"}
	settingKeys  = []string{"upstream_dial_timeout", "idle_timeout", "ping_interval", "pong_timeout", "close_timeout", "write_timeout", "max_frame_bytes", "max_message_bytes", "origins", "rate_limit", "max_request_body_bytes", "http_response_timeout", "auth", "events", "permessage_deflate", "max_session_lifetime"}
	rateKeys     = []string{"requests", "handshakes", "connections_per_ip", "messages", "messages_per_ip", "bytes", "frames", "on_exceed"}
	rateSpecKeys = []string{"rate", "burst"}
	routeKeys    = []string{"name", "host", "path", "strip_prefix", "upstreams", "balance", "upstream_tls", "subprotocols", "set_headers", "allow_plain", "http", "sticky_cookie"}
	upstreamKeys = []string{"url", "weight"}
	upTLSKeys    = []string{"ca", "server_name", "insecure_skip_verify"}
	// routeFieldKeys are the keys a route accepts: its own and any setting.
	routeFieldKeys = slices.Concat(routeKeys, settingKeys)
)

func builtinServer() ServerConfig {
	return ServerConfig{
		Listen:              DefaultListen,
		HandshakeTimeout:    10 * time.Second,
		MaxHeaderBytes:      16 * KiB,
		MaxPendingPerIP:     32,
		UpstreamFailureCode: 1014,
		ShutdownGrace:       30 * time.Second,
		ShutdownCloseCode:   1001,
		CloseSpread:         5 * time.Second,
		SessionIDHeader:     DefaultSessionIDHeader,
	}
}

func builtinSettings() RouteSettings {
	return RouteSettings{
		UpstreamDialTimeout: 5 * time.Second,
		IdleTimeout:         5 * time.Minute,
		PingInterval:        30 * time.Second,
		PongTimeout:         15 * time.Second,
		CloseTimeout:        5 * time.Second,
		WriteTimeout:        30 * time.Second,
		MaxFrameBytes:       1 * MiB,
		MaxMessageBytes:     4 * MiB,
		RateLimit:           RateLimits{OnExceed: DefaultOnExceed},
		PermessageDeflate:   DefaultDeflate,
		MaxRequestBodyBytes: 10 * MiB,
		HTTPResponseTimeout: 60 * time.Second,
	}
}

func (p *parser) config(root *yaml.Node) *Config {
	cfg := &Config{
		Path:    p.File,
		Server:  builtinServer(),
		TLS:     TLSConfig{MinVersion: DefaultTLSMinVersion},
		Log:     LogConfig{Level: "info", Format: "json", Access: true},
		Cluster: builtinCluster(),
	}
	doc := yamlwalk.Deref(root)
	docLine := yamlwalk.LineOf(doc, 0)
	if doc != nil && !yamlwalk.IsNull(doc) && doc.Kind != yaml.MappingNode {
		p.Errf(docLine, "", "the config must be a mapping with the keys %s; got %s", strings.Join(topKeys, ", "), yamlwalk.Describe(doc))
		return cfg
	}
	var defaults settingsLayer
	var routes *yamlwalk.Field
	for _, f := range p.Fields(yamlwalk.Val{N: doc, Key: "", Line: docLine}, topKeys) {
		switch f.Name {
		case "server":
			p.server(f.V, &cfg.Server, &cfg.AdminToken)
		case "tls":
			p.tlsBlock(f.V, &cfg.TLS)
		case "log":
			p.logBlock(f.V, &cfg.Log)
		case "cluster":
			p.clusterBlock(f.V, &cfg.Cluster)
		case "defaults":
			p.Accept(f.V)
			for _, g := range p.Fields(f.V, settingKeys) {
				p.setting(&defaults, g)
			}
		case "routes":
			routes = &f
		}
	}
	cfg.Defaults = p.resolveSettings("defaults", settingsLayer{}, defaults, p.firstLine("defaults"))
	if routes == nil {
		p.Errf(docLine, "routes", "required: at least one route")
	} else {
		cfg.Routes = p.routes(routes.V, defaults)
	}
	p.checkServer(cfg)
	p.checkTLS(cfg)
	p.checkCluster(cfg)
	return cfg
}

func (p *parser) finish(cfg *Config) (*Config, error) {
	p.Trim()
	if len(p.Errs) > 0 {
		return nil, Errors(sortDedupe(p.Errs))
	}
	for _, w := range sortDedupe(p.Warns) {
		cfg.Warnings = append(cfg.Warnings, w.Error())
	}
	return cfg, nil
}

// sortDedupe sorts by line, keeping discovery order on a line, and drops
// repeats (an aliased block is walked once per use).
func sortDedupe(es []*Error) []*Error {
	seen := map[Error]bool{}
	out := es[:0:0]
	for _, e := range es {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

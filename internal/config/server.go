package config

// The server: block.

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"wsgate/internal/config/yamlwalk"
)

// ---------------------------------------------------------------------------
// server

func (p *parser) server(v yamlwalk.Val, s *ServerConfig, token *string) {
	p.Accept(v)
	for _, f := range p.Fields(v, serverKeys) {
		switch f.Name {
		case "listen", "tls_listen", "admin_listen":
			a, ok := p.Str(f.V)
			if !ok {
				continue
			}
			if a != "" {
				if err := checkListenAddr(a); err != nil {
					p.Errf(f.V.Line, f.V.Key, "%v", err)
					continue
				}
			}
			switch f.Name {
			case "listen":
				s.Listen = a
			case "tls_listen":
				s.TLSListen = a
			default:
				s.AdminListen = a
			}
		case "trusted_proxies":
			s.TrustedProxies = nil
			for _, item := range p.Items(f.V) {
				str, ok := p.Str(item)
				if !ok {
					continue
				}
				pfx, err := parseTrustedProxy(str)
				if err != nil {
					p.Errf(item.Line, item.Key, "%v", err)
					continue
				}
				if pfx != pfx.Masked() {
					p.Warnf(item.Line, item.Key, "%s has host bits set; using %s", str, pfx.Masked())
					pfx = pfx.Masked()
				}
				if pfx.Bits() == 0 {
					p.Warnf(item.Line, item.Key, "%s trusts every peer: any client can choose the address it is logged and limited by", pfx)
				}
				s.TrustedProxies = append(s.TrustedProxies, pfx)
			}
		case "proxy_protocol":
			if b, ok := p.Bool(f.V); ok {
				s.ProxyProtocol = b
			}
		case "max_connections":
			if i, ok := p.Int(f.V, 0, math.MaxInt32); ok {
				s.MaxConnections = int(i)
			}
		case "handshake_timeout":
			if d, ok := p.PositiveDuration(f.V); ok {
				s.HandshakeTimeout = d
			}
		case "max_header_bytes":
			if sz, ok := p.sizeVal(f.V, 1); ok {
				s.MaxHeaderBytes = sz
				if sz < 1*KiB {
					p.Warnf(f.V.Line, f.V.Key, "%s is very small: ordinary browser requests will get 431", sz)
				}
			}
		case "max_pending_per_ip":
			if i, ok := p.Int(f.V, 0, math.MaxInt32); ok {
				s.MaxPendingPerIP = int(i)
			}
		case "upstream_failure_code":
			if c, ok := p.closeCode(f.V, 1011, 1014); ok {
				s.UpstreamFailureCode = c
			}
		case "shutdown_grace":
			if d, ok := p.PositiveDuration(f.V); ok {
				s.ShutdownGrace = d
			}
		case "shutdown_close_code":
			if c, ok := p.closeCode(f.V, 1001, 1012); ok {
				s.ShutdownCloseCode = c
			}
		case "close_spread":
			if d, ok := p.Duration(f.V); ok {
				s.CloseSpread = d
			}
		case "session_id_header", "admin_token_file":
			p.sessionServerKey(f, s, token) // sessions.go
		}
	}
}

func (p *parser) closeCode(v yamlwalk.Val, allowed ...int64) (uint16, bool) {
	i, ok := p.Int(v, 0, math.MaxUint16)
	if !ok {
		return 0, false
	}
	if !slices.Contains(allowed, i) {
		delete(p.Lines, v.Key)
		p.Errf(v.Line, v.Key, "%d is not allowed here (use %d or %d)", i, allowed[0], allowed[1])
		return 0, false
	}
	return uint16(i), true
}

// checkListenAddr accepts "host:port" with a numeric port; host may be empty
// (all interfaces), an IP or a name such as localhost. Port 0 (any free port)
// is allowed for tests.
func checkListenAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("bad address %q: want host:port, e.g. \":8080\" or \"127.0.0.1:9090\"", yamlwalk.Clip(a))
	}
	if !allDigits(port) || len(port) > 5 {
		return fmt.Errorf("bad address %q: the port must be a number", yamlwalk.Clip(a))
	}
	if n, _ := strconv.Atoi(port); n > 65535 {
		return fmt.Errorf("bad address %q: port %d is out of range", yamlwalk.Clip(a), n)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !isDNSName(host, false) {
			return fmt.Errorf("bad address %q: %q is neither an IP address nor a host name", yamlwalk.Clip(a), yamlwalk.Clip(host))
		}
	}
	return nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseTrustedProxy accepts a CIDR or a bare IP (a single address).
func parseTrustedProxy(s string) (netip.Prefix, error) {
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return pfx, nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad trusted proxy %q: want a CIDR like 10.0.0.0/8 or an IP address", yamlwalk.Clip(s))
	}
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (p *parser) checkServer(cfg *Config) {
	s := &cfg.Server
	if s.Listen == "" && s.TLSListen == "" {
		p.Errf(p.firstLine("server.listen", "server"), "server.listen", "no listener: set listen or tls_listen")
	}
	addrs := []struct{ key, addr string }{
		{"server.listen", s.Listen}, {"server.tls_listen", s.TLSListen}, {"server.admin_listen", s.AdminListen},
	}
	for i, a := range addrs {
		for _, b := range addrs[:i] {
			// Port 0 asks the kernel for a free port: never a clash.
			if a.addr != "" && a.addr == b.addr && !strings.HasSuffix(a.addr, ":0") {
				p.Errf(p.firstLine(a.key, "server"), a.key, "%q is already used by %s", a.addr, b.key)
			}
		}
	}
	if s.AdminListen != "" && cfg.AdminToken == "" {
		if host, _, err := net.SplitHostPort(s.AdminListen); err == nil && !isLoopbackHost(host) {
			p.Warnf(p.Lines["server.admin_listen"], "server.admin_listen",
				"%q is reachable from the network: it serves /sessions, /broadcast, /debug/pprof and POST /drain without authentication (set server.admin_token_file)", s.AdminListen)
		}
	}
	if s.CloseSpread >= s.ShutdownGrace {
		key := "server.close_spread"
		if _, ok := p.Lines[key]; !ok {
			key = "server.shutdown_grace"
		}
		p.Errf(p.firstLine(key, "server"), key, "close_spread %s must be less than shutdown_grace %s (sessions must have time to finish their close handshake)",
			s.CloseSpread, s.ShutdownGrace)
	}
}

// firstLine returns the line of the first of keys that was set.
func (p *parser) firstLine(keys ...string) int {
	for _, k := range keys {
		if l, ok := p.Lines[k]; ok {
			return l
		}
	}
	return 0
}

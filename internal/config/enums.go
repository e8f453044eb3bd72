package config

import "crypto/tls"

// The config's enumerations are types after parsing: the gateway compares
// typed constants, never strings a user wrote. Their values are the YAML
// spellings, so a config prints as it was written.

// Balance is a route's `balance`: how its upstreams are ordered for a
// handshake (internal/balance implements each).
type Balance string

const (
	RoundRobin Balance = "round_robin"
	LeastConn  Balance = "least_conn"
	IPHash     Balance = "ip_hash"
	// Cookie places a client by weighted round robin and keeps it there
	// with a sticky cookie (README "Putting wsgate in front of an
	// application").
	Cookie Balance = "cookie"
)

// HTTPMode is a route's `http`: what a request that is not a WebSocket
// upgrade gets.
type HTTPMode string

const (
	HTTPReject HTTPMode = "reject" // 405/426, as a WebSocket-only endpoint
	HTTPProxy  HTTPMode = "proxy"  // proxied to the route's upstreams
)

// OnExceed is `rate_limit.on_exceed`: what happens to a client over its
// message, byte or frame rate.
type OnExceed string

const (
	OnExceedClose    OnExceed = "close"    // 1008 to the client, 1001 upstream
	OnExceedThrottle OnExceed = "throttle" // stop reading the client until tokens are there
)

// TLSVersion is `tls.min_version`.
type TLSVersion string

const (
	TLS12 TLSVersion = "1.2"
	TLS13 TLSVersion = "1.3"
)

// Version is v as a crypto/tls version number.
func (v TLSVersion) Version() uint16 {
	if v == TLS13 {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

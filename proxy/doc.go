// Package proxy is the gateway: New builds one from a loaded config, Serve
// runs it on its listeners until its context ends (then shuts down
// gracefully), Reload swaps in a new config without dropping sessions.
//
// What happens to a connection, package by package:
//
//   - internal/listen accepts it (PROXY protocol, handshake_timeout,
//     max_pending_per_ip, file-descriptor back-off); net/http reads the
//     request; certs supplies the certificate on the TLS listener.
//   - ServeHTTP (gateway.go) answers the opening handshake: internal/route
//     picks the route, the handshake checks and limits run in the order of
//     docs/handshake.md "Order of checks", internal/balance orders the
//     upstreams, the upstream handshake is made (forward.go builds its
//     headers), and only then the client gets its 101.
//   - internal/relay then owns both connections until the session ends;
//     the gateway keeps a registry of live sessions (sessions.go: indexed
//     by id and by tag) for shutdown, reload, drain, internal/metrics and
//     the sessions API, whose admin endpoints push to and close sessions
//     and whose events go out through internal/events.
//
// A config becomes runtime objects in two steps: buildSnapshot makes the
// routes, pools, dialers and relay settings from the config alone, and
// provision (limits.go) gives them what must outlive a reload — surviving
// upstreams' Backends and unchanged rate-limit state — at start and at
// every reload. serve.go holds the listeners, shutdown and the admin
// endpoints; reload.go holds reload and drain. The gateway has no
// package-level mutable state: two gateways in one process share nothing
// but the relay's buffer pools.
//
// proxy imports every internal package; none of them imports proxy.
package proxy

// Package route matches a request's host and path to a configured route
// (docs/handshake.md "Routing"), and holds the path helpers the gateway
// uses toward upstreams (CleanPath, StripPrefix, JoinPath).
//
// A Router is built once per config snapshot and only read after that:
// exact hosts before wildcards before the catch-all, and within a host the
// longest path prefix on a segment boundary. It imports nothing of the
// gateway.
package route

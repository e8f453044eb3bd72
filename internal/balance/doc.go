// Package balance is a route's pool of upstreams: the order in which a
// handshake tries them (round_robin, least_conn, ip_hash; weights), and
// passive health — an upstream that failed is skipped for a back-off that
// doubles from BackoffMin up to 30 s, and drained ones leave the rotation
// (docs/handshake.md "Dialling the upstream").
//
// A Pool and its Backends are safe for concurrent use. The package imports
// nothing of the gateway.
package balance

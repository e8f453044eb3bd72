// Package listen wraps the gateway's listeners: the PROXY protocol,
// handshake_timeout, max_pending_per_ip, max_header_bytes, the accept
// back-off when the process is out of file descriptors, and the recogniser
// of the answers net/http writes by itself (docs/handshake.md "At the
// listener", docs/operations.md "File descriptors").
//
// A Gate holds what one gateway's listeners share; what the gateway does
// with a refused connection (log and count it) comes back through
// Gate.Rejected. A connection this package accepts gives the TCP
// connection below its wrappers through NetConn, which the relay uses to
// park and to close beneath TLS. It imports config and ratelimit, and
// nothing else of the gateway.
package listen

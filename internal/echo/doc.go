// Package echo is the built-in echo upstream (`builtin:echo`): a strict
// RFC 6455 server on the far end of an in-process pipe, so the demo route
// needs no socket and no file descriptor. Dial is a handshake.Dialer's
// NetDialContext; Serve and Loop serve a connection (tests use them as a
// strict echo server). It imports frame and handshake only.
package echo

// Package interop holds the wire-level interoperability tests of wsgate's
// codec (package frame) and handshakes (package handshake) with two
// widely used third-party implementations, gorilla/websocket and
// coder/websocket, in both directions, over real sockets on 127.0.0.1.
//
// It has no code of its own outside its tests: the third-party libraries
// are imported by test files only, so nothing in the gateway depends on
// them.
//
// The model: a small endpoint written on package frame alone (ReadHeader,
// Message, Mask, PutHeader, ParseClose/AppendClose) plays the server behind
// handshake.Check and handshake.Upgrade, and the client behind
// handshake.Dialer.Dial. Their clients talk to our echo server; our client
// talks to their echo servers. Each test names the RFC 6455 section it
// exercises.
package interop

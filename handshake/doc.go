// Package handshake implements both halves of the RFC 6455 opening
// handshake as wsgate performs them. It does no frame I/O; package frame
// owns the wire format that follows.
//
// # The model
//
// A gateway session begins with two handshakes, in this order:
//
//  1. The client's request is checked. Check is a pure function of the
//     request line and headers that either returns the Request the gateway
//     needs (key, subprotocol offers, extension offers, origin) or a
//     *Rejection carrying the status (405, 400 or 426), a short reason and
//     the headers RFC 6455 §4.2.1/§4.2.2 and RFC 9110 call for. The proxy
//     package then applies route policy (Origin, limits) and answers any
//     rejection with WriteRejection.
//
//  2. The gateway dials the upstream (Dialer.Dial, RFC 6455 §4.1) with a
//     fresh key of its own and verifies the 101. A non-101 comes back as a
//     *StatusError holding what the gateway passes on to the client (status,
//     headers, a bounded body); protocol violations come back as sentinel
//     errors (ErrBadAccept, ErrBadProtocol, …) that the gateway answers
//     with 502. Errors wrap their cause so timeouts (504) and descriptor
//     exhaustion (503) can be told apart with errors.Is/As.
//
//  3. Only then does the client get its 101: Upgrade hijacks the
//     connection, clears the deadlines net/http left on it, and writes the
//     101 with the subprotocol the upstream chose and the upstream's
//     Set-Cookie.
//
// # Bytes that arrive early
//
// Both peers may send frames right behind their handshake (a client may
// pipeline behind its request; RFC 6455 §4.2.2 lets a server start sending
// once its 101 is out). Both sides therefore return a *bufio.Reader next
// to the net.Conn, which may already hold those bytes; reading the conn
// directly would lose them. ReadResponse consumes exactly the response
// head of a 101 and not a byte more.
//
// # Untrusted text
//
// Everything we write that came from a peer — an upstream's Set-Cookie on
// the client's 101, a subprotocol name, forwarded request headers — has its
// control characters stripped and header names that are not tokens are
// dropped, so no peer can split our messages. Response heads are bounded
// (Dialer.MaxResponseBytes) and parsed strictly; bodies of non-101 answers
// are cut at Dialer.MaxBodyBytes.
//
// # Extensions
//
// The one extension negotiated is permessage-deflate (RFC 7692, deflate.go;
// README "Compression"): OfferDeflate turns the client's offers into the
// upstream's, DialDeflate sends them and checks the upstream's answer
// against them (anything else fails with ErrBadExtension, answered 502),
// and UpgradeDeflate returns the accepted parameters to the client. Every
// other extension offered is dropped.
package handshake

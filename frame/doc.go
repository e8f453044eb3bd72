// Package frame is the RFC 6455 wire format: frame headers, masking, close
// payloads, fragmentation state and streaming UTF-8 validation.
//
// It is a codec, not a connection. Nothing here reads a whole frame into
// memory, starts a goroutine, or decides what to do about a bad frame: it
// decodes and encodes into caller-owned buffers and reports violations as
// *Error values that carry the close code the offending peer must receive
// (1002 protocol error, 1007 invalid payload data, 1009 message too big), so a
// relay can translate a violation into a close frame without guessing.
//
// The model for a relay reading one direction of a connection is:
//
//	h, err := frame.ReadHeader(br, rules)  // header checks, frame size cap
//	err = msg.Next(h)                      // fragmentation order, message size cap
//	for each payload chunk p:
//	    pos = frame.Mask(h.Key, pos, p)    // unmask in place (or Remask to a new key)
//	    err = msg.Payload(p)               // UTF-8 of text messages, across chunks and frames
//	err = msg.EndFrame()                   // a text message must not stop inside a code point
//
// Control frames (close, ping, pong) may arrive between the fragments of a
// data message (RFC 6455 §5.4); Message.Next leaves the data message's state
// untouched for them. Close payloads are checked with ParseClose.
package frame

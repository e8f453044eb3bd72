package main

// Compression (echo-deflate, and -deflate for idle-mem): the client offers
// permessage-deflate, the backend accepts what it is offered, and every
// message goes compressed. Without context takeover a message is
// compressed once per connection and the same deflate bytes are sent
// every time (each message stands alone, RFC 7692 §7.2.1); the backend
// echoes frames as they came, RSV1 included, so the client checks the echo
// byte for byte and never inflates: its CPU stays out of the measurement,
// while a frame-aware proxy inflates every message to check it.

import (
	"bytes"
	"compress/flate"
	"fmt"
	"math/rand/v2"
	"strings"

	"wsgate/frame"
	"wsgate/handshake"
)

// Deflate modes (-deflate).
const (
	deflateOff        = "off"
	deflateNoTakeover = "no_context_takeover"
	deflateTakeover   = "context_takeover"
)

// deflateOffer is the client's offer for mode, nil when off. It names
// what each side does with its window, so that a backend that accepts
// whatever it is offered answers in kind.
func deflateOffer(mode string) (*handshake.DeflateOffer, error) {
	switch mode {
	case "", deflateOff:
		return nil, nil
	case deflateNoTakeover:
		return &handshake.DeflateOffer{Offers: []handshake.Deflate{{ServerNoContextTakeover: true, ClientNoContextTakeover: true}}}, nil
	case deflateTakeover:
		return &handshake.DeflateOffer{Offers: []handshake.Deflate{{}}, ContextTakeover: true}, nil
	}
	return nil, fmt.Errorf("-deflate %q: want %s, %s or %s", mode, deflateOff, deflateNoTakeover, deflateTakeover)
}

// jsonPayload is about size bytes of chat-like JSON text, different per
// connection; it compresses about 4:1.
func jsonPayload(size, id int) []byte {
	rng := rand.New(rand.NewPCG(uint64(id), 17))
	names := []string{"ada", "grace", "linus", "ken", "barbara", "edsger", "margaret", "dennis"}
	var b strings.Builder
	b.WriteString(`{"messages":[`)
	for b.Len() < size-96 {
		fmt.Fprintf(&b, `{"id":%d,"user":"%s","room":"lobby-%d","text":"message %d from %s","ts":%d},`,
			rng.IntN(1e6), names[rng.IntN(len(names))], rng.IntN(8), rng.IntN(1000), names[rng.IntN(len(names))], 1700000000+rng.IntN(1e6))
	}
	b.WriteString(`{}]}`)
	s := b.String()
	for len(s) < size {
		s += " "
	}
	return []byte(s[:size])
}

// compressMessage compresses p as one permessage-deflate message (RFC 7692
// §7.2.1: sync flush, its 00 00 ff ff tail removed), at zlib's default
// level, as most peers do.
func compressMessage(p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.DefaultCompression)
	_, _ = w.Write(p)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// messagePayload is what connection id sends: text of size bytes, or its
// compressed form when compression is on.
func messagePayload(o options, id int) []byte {
	if o.Deflate == "" || o.Deflate == deflateOff {
		return textPayload(o.Size, id)
	}
	return compressMessage(jsonPayload(o.Size, id))
}

// appendData appends a masked text frame carrying payload, with RSV1 when
// the connection negotiated compression (payload is then compressed).
func (c *conn) appendData(dst []byte, payload []byte) []byte {
	h := frame.Header{Fin: true, Rsv: c.rsv, Opcode: frame.OpText, Masked: true, Key: frame.NewKey(), Length: int64(len(payload))}
	return frame.AppendFrame(dst, h, payload)
}

// sendData writes one data frame (see appendData).
func (c *conn) sendData(payload []byte) error {
	c.wmu.Lock()
	c.wbuf = c.appendData(c.wbuf[:0], payload)
	_, err := c.nc.Write(c.wbuf)
	c.wmu.Unlock()
	return err
}

// backendDeflate is the backend's answer to a client's extension offers:
// it accepts the first permessage-deflate offer with the context takeover
// it asks for, nil if there is none.
func backendDeflate(offers []string) *handshake.Deflate {
	o := handshake.OfferDeflate(offers, true)
	if o == nil {
		return nil
	}
	off := o.Offers[0]
	return &handshake.Deflate{ServerNoContextTakeover: off.ServerNoContextTakeover, ClientNoContextTakeover: off.ClientNoContextTakeover}
}

package proxy

import (
	"sync"

	"wsgate/handshake"
	"wsgate/internal/config"
	"wsgate/internal/relay"
)

// permessage-deflate end to end (README "Compression"): the client's offers
// go upstream as the route's policy says, and what the upstream accepted
// goes back to the client and configures the session's inflation checks.

// deflateOffer is the offer for the upstream, or nil: compression off for
// the route, or no usable permessage-deflate offer from the client.
func deflateOffer(p config.Deflate, req handshake.Request) *handshake.DeflateOffer {
	if !p.Enabled || len(req.Extensions) == 0 {
		return nil
	}
	return handshake.OfferDeflate(req.Extensions, p.ContextTakeover)
}

// compressionNames interns the access log's compression field: every
// session with the same parameters shares one string (the parameters take
// a few hundred values at most), so a compressed session costs no more
// memory than another.
var compressionNames sync.Map // handshake.Deflate -> string

func compressionName(d handshake.Deflate) string {
	if v, ok := compressionNames.Load(d); ok {
		return v.(string)
	}
	v, _ := compressionNames.LoadOrStore(d, d.String())
	return v.(string)
}

// negotiated is the response for the client's 101 (nil: no compression)
// and the session's inflation settings, from the upstream's accepted
// response.
func negotiated(offer *handshake.DeflateOffer, up *handshake.Upstream) (*handshake.Deflate, relay.Deflate) {
	if offer == nil || !up.DeflateOn {
		return nil, relay.Deflate{}
	}
	d := offer.ClientResponse(up.Deflate)
	return &d, relay.Deflate{
		ClientTakeover:     !d.ClientNoContextTakeover,
		UpstreamTakeover:   !d.ServerNoContextTakeover,
		ClientWindowBits:   max(d.ClientMaxWindowBits, 0),
		UpstreamWindowBits: d.ServerMaxWindowBits,
	}
}

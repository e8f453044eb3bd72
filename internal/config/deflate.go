package config

import "wsgate/internal/config/yamlwalk"

// The permessage_deflate block (README "Compression"), in defaults or a
// route, merged key by key like rate_limit.

// Deflate is a route's permessage-deflate policy.
type Deflate struct {
	// Enabled: the client's permessage-deflate offers go upstream and the
	// upstream's acceptance comes back; false: no offer goes upstream.
	Enabled bool
	// ContextTakeover: false makes both sides compress every message on
	// its own (server_no_context_takeover offered upstream,
	// client_no_context_takeover answered to the client), so a session
	// keeps no compression state between messages. true lets them keep
	// their LZ77 window, and the gateway then keeps the last 32 KiB of each
	// direction's output per session to check the next message.
	ContextTakeover bool
}

// DefaultDeflate is the built-in policy: negotiated, no context takeover.
var DefaultDeflate = Deflate{Enabled: true}

var deflateKeys = []string{"enabled", "context_takeover"}

// deflateLayer is what one block wrote of permessage_deflate.
type deflateLayer struct {
	enabled, takeover opt[bool]
}

func (l deflateLayer) over(base deflateLayer) deflateLayer {
	return deflateLayer{
		enabled:  l.enabled.or(base.enabled),
		takeover: l.takeover.or(base.takeover),
	}
}

func (l deflateLayer) resolve() Deflate {
	return Deflate{
		Enabled:         l.enabled.get(DefaultDeflate.Enabled),
		ContextTakeover: l.takeover.get(DefaultDeflate.ContextTakeover),
	}
}

// deflateBlock parses permessage_deflate: {enabled: bool, context_takeover: bool}.
func (p *parser) deflateBlock(v yamlwalk.Val, l *deflateLayer) {
	p.Accept(v)
	for _, f := range p.Fields(v, deflateKeys) {
		b, ok := p.Bool(f.V)
		if !ok {
			continue
		}
		switch f.Name {
		case "enabled":
			l.enabled.put(b)
		case "context_takeover":
			l.takeover.put(b)
		}
	}
}

// checkDeflate warns about a setting that has no effect.
func (p *parser) checkDeflate(scope string, l deflateLayer, own deflateLayer) {
	d := l.resolve()
	if !d.Enabled && own.takeover.set && d.ContextTakeover {
		key := scope + ".permessage_deflate.context_takeover"
		if line, ok := p.Lines[key]; ok {
			p.Warnf(line, key, "context_takeover has no effect while permessage_deflate.enabled is false")
		}
	}
}

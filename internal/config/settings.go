package config

import (
	"math"
	"slices"
	"time"
	"wsgate/internal/config/yamlwalk"

	"gopkg.in/yaml.v3"
)

// Route settings: defaults: and the same keys in a route, merged key by key.

// ---------------------------------------------------------------------------
// Route settings: layers and merging.

type opt[T any] struct {
	set bool
	v   T
}

func (o *opt[T]) put(v T) { o.set, o.v = true, v }

func (o opt[T]) or(fallback opt[T]) opt[T] {
	if o.set {
		return o
	}
	return fallback
}

func (o opt[T]) get(def T) T {
	if o.set {
		return o.v
	}
	return def
}

// rateSpec is one rate_limit entry as written. burst 0 = not written.
type rateSpec struct {
	unlimited bool
	perSecond float64
	burst     int64
}

// settingsLayer holds the settings one block wrote; unset fields inherit.
type settingsLayer struct {
	dialTimeout, idle, ping, pong, closeT, write opt[time.Duration]
	httpResponse                                 opt[time.Duration]
	lifetime                                     opt[time.Duration] // max_session_lifetime
	maxFrame, maxMessage, maxBody                opt[Size]
	requests                                     opt[rateSpec]
	origins                                      opt[[]string]
	handshakes, messages, messagesPerIP          opt[rateSpec]
	bytes, frames                                opt[rateSpec]
	connsPerIP                                   opt[int]
	onExceed                                     opt[OnExceed]
	events                                       opt[*Events]
	deflate                                      deflateLayer
	auth                                         opt[*Auth] // set to nil: "off"
}

// over returns l with base underneath: l's set fields win, key by key, also
// inside rate_limit.
func (l settingsLayer) over(base settingsLayer) settingsLayer {
	return settingsLayer{
		dialTimeout:   l.dialTimeout.or(base.dialTimeout),
		idle:          l.idle.or(base.idle),
		ping:          l.ping.or(base.ping),
		pong:          l.pong.or(base.pong),
		closeT:        l.closeT.or(base.closeT),
		write:         l.write.or(base.write),
		maxFrame:      l.maxFrame.or(base.maxFrame),
		maxMessage:    l.maxMessage.or(base.maxMessage),
		maxBody:       l.maxBody.or(base.maxBody),
		httpResponse:  l.httpResponse.or(base.httpResponse),
		requests:      l.requests.or(base.requests),
		origins:       l.origins.or(base.origins),
		handshakes:    l.handshakes.or(base.handshakes),
		messages:      l.messages.or(base.messages),
		messagesPerIP: l.messagesPerIP.or(base.messagesPerIP),
		bytes:         l.bytes.or(base.bytes),
		frames:        l.frames.or(base.frames),
		connsPerIP:    l.connsPerIP.or(base.connsPerIP),
		onExceed:      l.onExceed.or(base.onExceed),
		lifetime:      l.lifetime.or(base.lifetime),
		events:        l.events.or(base.events),
		deflate:       l.deflate.over(base.deflate),
		auth:          l.auth.or(base.auth),
	}
}

// setting parses one settings key into l; false if name is not a setting.
func (p *parser) setting(l *settingsLayer, f yamlwalk.Field) bool {
	durations := map[string]*opt[time.Duration]{
		"upstream_dial_timeout": &l.dialTimeout,
		"idle_timeout":          &l.idle,
		"close_timeout":         &l.closeT,
		"write_timeout":         &l.write,
		"http_response_timeout": &l.httpResponse,
	}
	if o, ok := durations[f.Name]; ok {
		if d, ok := p.PositiveDuration(f.V); ok {
			o.put(d)
		}
		return true
	}
	switch f.Name {
	case "ping_interval":
		if d, ok := p.Duration(f.V); ok {
			l.ping.put(d)
		}
	case "pong_timeout":
		if d, ok := p.Duration(f.V); ok {
			l.pong.put(d)
		}
	case "max_session_lifetime":
		if d, ok := p.Duration(f.V); ok {
			l.lifetime.put(d)
		}
	case "max_frame_bytes":
		if s, ok := p.sizeVal(f.V, minFrameBytes); ok {
			l.maxFrame.put(s)
		}
	case "max_message_bytes":
		if s, ok := p.sizeVal(f.V, 1); ok {
			l.maxMessage.put(s)
		}
	case "max_request_body_bytes":
		if s, ok := p.sizeVal(f.V, 0); ok {
			l.maxBody.put(s)
		}
	case "origins":
		n := yamlwalk.Deref(f.V.N)
		if n != nil && n.Kind == yaml.ScalarNode {
			p.Errf(f.V.Line, f.V.Key, "want a list of origins, e.g. [\"https://app.example.com\"], got %s", yamlwalk.Describe(n))
			return true
		}
		list, ok := []string{}, true
		seen := map[string]bool{}
		for _, item := range p.Items(f.V) {
			s, sok := p.Str(item)
			if !sok {
				ok = false
				continue
			}
			o, err := normalizeOrigin(s, true)
			if err != nil {
				p.Errf(item.Line, item.Key, "%v", err)
				ok = false
				continue
			}
			if seen[o] {
				p.Warnf(item.Line, item.Key, "origin %q is listed twice", o)
				continue
			}
			seen[o] = true
			list = append(list, o)
		}
		if ok {
			p.Accept(f.V)
			l.origins.put(list)
		}
	case "rate_limit":
		p.Accept(f.V)
		p.rateLimit(f.V, l)
	case "events":
		p.events(f.V, &l.events) // sessions.go
	case "permessage_deflate":
		p.deflateBlock(f.V, &l.deflate)
	case "auth":
		// A route's auth block replaces the one in defaults as a whole
		// (README "Authentication"): half of one and half of the other
		// would be a check nobody wrote.
		if a, ok := p.authBlock(f.V); ok {
			l.auth.put(a)
		}
	default:
		return false
	}
	return true
}

func (p *parser) rateLimit(v yamlwalk.Val, l *settingsLayer) {
	for _, f := range p.Fields(v, rateKeys) {
		switch f.Name {
		case "requests":
			p.rateEntry(f.V, &l.requests, false)
		case "handshakes":
			p.rateEntry(f.V, &l.handshakes, false)
		case "messages":
			p.rateEntry(f.V, &l.messages, false)
		case "messages_per_ip":
			p.rateEntry(f.V, &l.messagesPerIP, false)
		case "bytes":
			p.rateEntry(f.V, &l.bytes, true)
		case "frames":
			p.rateEntry(f.V, &l.frames, false)
		case "connections_per_ip":
			if i, ok := p.Int(f.V, 0, math.MaxInt32); ok {
				l.connsPerIP.put(int(i))
			}
		case "on_exceed":
			if s, ok := p.OneOf(f.V, "close", "throttle"); ok {
				l.onExceed.put(OnExceed(s))
			}
		}
	}
}

// rateEntry parses {rate: 20/s, burst: 40}, the short form "20/s" (burst
// derived), or "unlimited" (lifts an inherited limit).
func (p *parser) rateEntry(v yamlwalk.Val, o *opt[rateSpec], isBytes bool) {
	example := "{rate: 20/s, burst: 40}"
	if isBytes {
		example = "{rate: 1MiB/s, burst: 4MiB}"
	}
	parseRate := func(v yamlwalk.Val) (float64, bool) {
		s, ok := p.Str(v)
		if !ok {
			return 0, false
		}
		var r float64
		var err error
		if isBytes {
			r, err = ParseByteRate(s)
		} else {
			r, err = ParseRate(s)
		}
		if err != nil {
			delete(p.Lines, v.Key)
			p.Errf(v.Line, v.Key, "%v", err)
			return 0, false
		}
		return r, true
	}
	n := yamlwalk.Deref(v.N)
	if n != nil && n.Kind == yaml.ScalarNode {
		if n.Value == "unlimited" {
			p.Accept(v)
			o.put(rateSpec{unlimited: true})
			return
		}
		if r, ok := parseRate(v); ok {
			o.put(rateSpec{perSecond: r})
		}
		return
	}
	if n == nil || n.Kind != yaml.MappingNode {
		p.Errf(v.Line, v.Key, "want %s or \"unlimited\", got %s", example, yamlwalk.Describe(n))
		return
	}
	var spec rateSpec
	ok, haveRate := true, false
	for _, f := range p.Fields(v, rateSpecKeys) {
		switch f.Name {
		case "rate":
			r, rok := parseRate(f.V)
			ok = ok && rok
			haveRate = rok
			spec.perSecond = r
		case "burst":
			var b int64
			var bok bool
			if isBytes {
				var s Size
				s, bok = p.sizeVal(f.V, 1)
				b = int64(s)
			} else {
				b, bok = p.Int(f.V, 1, math.MaxInt32)
			}
			ok = ok && bok
			spec.burst = b
		}
	}
	if !haveRate && ok {
		p.Errf(v.Line, yamlwalk.Join(v.Key, "rate"), "required, e.g. %s", example)
		ok = false
	}
	if ok {
		p.Accept(v)
		o.put(spec)
	}
}

// resolveSettings turns a block's layer over its base into RouteSettings and
// checks the contradictions between values. scope is "defaults" or
// "routes[i]"; for a route, a contradiction made only of values inherited
// from defaults is not repeated (it was reported on defaults).
func (p *parser) resolveSettings(scope string, base, own settingsLayer, scopeLine int) RouteSettings {
	l := own.over(base)
	s := builtinSettings()
	s.UpstreamDialTimeout = l.dialTimeout.get(s.UpstreamDialTimeout)
	s.IdleTimeout = l.idle.get(s.IdleTimeout)
	s.PingInterval = l.ping.get(s.PingInterval)
	s.PongTimeout = l.pong.get(s.PongTimeout)
	s.CloseTimeout = l.closeT.get(s.CloseTimeout)
	s.WriteTimeout = l.write.get(s.WriteTimeout)
	s.MaxFrameBytes = l.maxFrame.get(s.MaxFrameBytes)
	s.MaxMessageBytes = l.maxMessage.get(s.MaxMessageBytes)
	s.MaxRequestBodyBytes = l.maxBody.get(s.MaxRequestBodyBytes)
	s.HTTPResponseTimeout = l.httpResponse.get(s.HTTPResponseTimeout)
	s.MaxSessionLifetime = l.lifetime.get(0)
	if l.origins.set && len(l.origins.v) > 0 {
		s.Origins = slices.Clone(l.origins.v)
	}
	frame := s.EffectiveMaxFrameBytes()
	rl := &s.RateLimit
	rl.Requests = toRate(l.requests, 0)
	rl.Handshakes = toRate(l.handshakes, 0)
	rl.Messages = toRate(l.messages, 0)
	rl.MessagesPerIP = toRate(l.messagesPerIP, 0)
	rl.Bytes = toRate(l.bytes, frame)
	rl.Frames = toRate(l.frames, 0)
	rl.ConnectionsPerIP = l.connsPerIP.get(0)
	rl.OnExceed = l.onExceed.get(DefaultOnExceed)
	s.Events = l.events.get(nil)
	s.PermessageDeflate = l.deflate.resolve()
	p.checkDeflate(scope, l.deflate, own.deflate)
	s.Auth = l.auth.get(nil)

	isRoute := scope != "defaults"
	// blame picks the key and line to report a contradiction between names
	// at: the first one this block wrote itself; for defaults, the first one
	// written at all.
	blame := func(names ...string) (string, int, bool) {
		for _, n := range names {
			if line, ok := p.Lines[scope+"."+n]; ok {
				return scope + "." + n, line, true
			}
		}
		if isRoute {
			return "", 0, false
		}
		return scope + "." + names[0], scopeLine, true
	}
	if s.PingInterval > 0 && s.PongTimeout == 0 {
		if key, line, ok := blame("pong_timeout", "ping_interval"); ok {
			p.Errf(line, key, "pong_timeout must be greater than 0 while ping_interval is %s (set ping_interval: 0 to turn keepalive pings off)", s.PingInterval)
		}
	}
	if l.bytes.set && !l.bytes.v.unlimited && l.bytes.v.burst > 0 && Size(l.bytes.v.burst) < frame {
		if key, line, ok := blame("rate_limit.bytes.burst", "rate_limit.bytes", "max_frame_bytes", "max_message_bytes"); ok {
			p.Errf(line, key, "rate_limit.bytes.burst %s is less than the largest frame allowed (%s): such a frame could never pass the byte limit",
				Size(l.bytes.v.burst), frame)
		}
	}
	if s.MaxFrameBytes > s.MaxMessageBytes {
		if key, line, ok := blame("max_message_bytes", "max_frame_bytes"); ok {
			p.Warnf(line, key, "max_frame_bytes %s > max_message_bytes %s: frames are capped at %s",
				s.MaxFrameBytes, s.MaxMessageBytes, s.MaxMessageBytes)
		}
	}
	if s.PingInterval > 0 && s.PingInterval < time.Second {
		if key, line, ok := blame("ping_interval"); ok {
			p.Warnf(line, key, "ping_interval %s is very short: every session pings both legs that often", s.PingInterval)
		}
	}
	return s
}

// toRate resolves a rate entry; an omitted burst is one second's worth, and
// for bytes at least one largest frame, so the limit can always be met.
func toRate(o opt[rateSpec], minBurst Size) *Rate {
	if !o.set || o.v.unlimited {
		return nil
	}
	burst := o.v.burst
	if burst == 0 {
		burst = max(1, int64(min(math.Ceil(o.v.perSecond), math.MaxInt32)), int64(minBurst))
	}
	return &Rate{PerSecond: o.v.perSecond, Burst: burst}
}

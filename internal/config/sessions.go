package config

// The sessions API's keys (README "Sessions API and events"):
// server.session_id_header, server.admin_token_file, and the events
// setting (in defaults: or a route).

import (
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"wsgate/internal/config/yamlwalk"

	"gopkg.in/yaml.v3"
)

// DefaultSessionIDHeader carries the session id on the upstream handshake.
const DefaultSessionIDHeader = "X-Wsgate-Session"

// Events is the `events` setting: where session start and end are POSTed.
type Events struct {
	URL        string
	Connect    bool // on: [connect]
	Disconnect bool // on: [disconnect]
	Timeout    time.Duration
}

// DefaultEventsTimeout bounds one POST of an event.
const DefaultEventsTimeout = 2 * time.Second

var eventsKeys = []string{"url", "on", "timeout"}

// sessionServerKey parses the server keys of the sessions API into s; the
// admin token goes to *token.
func (p *parser) sessionServerKey(f yamlwalk.Field, s *ServerConfig, token *string) {
	str, ok := p.Str(f.V)
	if !ok {
		return
	}
	switch f.Name {
	case "session_id_header":
		if str != "" {
			if !isToken(str) {
				p.Errf(f.V.Line, f.V.Key, "%q is not a valid header name", yamlwalk.Clip(str))
				return
			}
			str = http.CanonicalHeaderKey(str)
			if strings.HasPrefix(str, "Sec-Websocket-") || hopByHopName(str) {
				p.Errf(f.V.Line, f.V.Key, "%s cannot carry the session id: the handshake uses it", str)
				return
			}
		}
		s.SessionIDHeader = str
	case "admin_token_file":
		s.AdminTokenFile, *token = str, ""
		if str == "" {
			return
		}
		b, err := readSmallFile(str)
		if err != nil {
			p.Errf(f.V.Line, f.V.Key, "%v", err)
			return
		}
		tok := string(bytes.TrimSpace(b))
		switch {
		case tok == "":
			p.Errf(f.V.Line, f.V.Key, "%s is empty: it must hold the admin bearer token", str)
		case !isVisibleASCII(tok):
			p.Errf(f.V.Line, f.V.Key, "%s: the token must be one line of visible ASCII (it goes in an Authorization header)", str)
		default:
			if len(tok) < 16 {
				p.Warnf(f.V.Line, f.V.Key, "the admin token in %s is short (%d characters): use at least 32 random characters", str, len(tok))
			}
			*token = tok
		}
	}
}

func hopByHopName(h string) bool {
	switch h {
	case "Connection", "Upgrade", "Host", "Content-Length", "Transfer-Encoding", "Te", "Trailer", "Keep-Alive":
		return true
	}
	return false
}

func isVisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// events parses the events setting: {url, on, timeout}, or "off" (also
// "none") to turn events inherited from defaults off in a route, as
// `auth: off` does.
func (p *parser) events(v yamlwalk.Val, o *opt[*Events]) {
	n := yamlwalk.Deref(v.N)
	if n != nil && n.Kind == yaml.ScalarNode && (n.Value == "off" || n.Value == "none") {
		p.Accept(v)
		o.put(nil)
		return
	}
	if n == nil || n.Kind != yaml.MappingNode {
		p.Errf(v.Line, v.Key, "want {url: http://app.internal/ws-events, on: [connect, disconnect], timeout: 2s} or \"off\", got %s", yamlwalk.Describe(n))
		return
	}
	e := &Events{Connect: true, Disconnect: true, Timeout: DefaultEventsTimeout}
	ok, haveURL := true, false
	for _, f := range p.Fields(v, eventsKeys) {
		switch f.Name {
		case "url":
			s, sok := p.Str(f.V)
			if !sok {
				ok = false
				continue
			}
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
				delete(p.Lines, f.V.Key)
				p.Errf(f.V.Line, f.V.Key, "bad events URL %q: want http:// or https:// with a host, e.g. http://app.internal/ws-events", yamlwalk.Clip(s))
				ok = false
				continue
			}
			e.URL, haveURL = s, true
		case "on":
			e.Connect, e.Disconnect = false, false
			var seen []string
			for _, item := range p.Items(f.V) {
				s, sok := p.OneOf(item, "connect", "disconnect")
				if !sok {
					ok = false
					continue
				}
				if slices.Contains(seen, s) {
					p.Warnf(item.Line, item.Key, "%s is listed twice", s)
				}
				seen = append(seen, s)
				e.Connect = e.Connect || s == "connect"
				e.Disconnect = e.Disconnect || s == "disconnect"
			}
			if ok && len(seen) == 0 {
				p.Warnf(f.V.Line, f.V.Key, "no event listed: nothing will be sent")
			}
		case "timeout":
			if d, dok := p.PositiveDuration(f.V); dok {
				e.Timeout = d
			} else {
				ok = false
			}
		}
	}
	if !haveURL && ok {
		p.Errf(v.Line, yamlwalk.Join(v.Key, "url"), "required, e.g. http://app.internal/ws-events")
		ok = false
	}
	if ok {
		p.Accept(v)
		o.put(e)
	}
}

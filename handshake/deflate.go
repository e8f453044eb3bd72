package handshake

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// permessage-deflate negotiation (RFC 7692 §7.1), as the gateway does it
// for both of its handshakes (README "Compression"): the client's offers
// go upstream (with server_no_context_takeover added when the route holds
// no compression state), the upstream's answer is checked against what was
// offered, and the client gets that answer back (with
// client_no_context_takeover added likewise).

// DeflateName is the extension token of RFC 7692 §7.
const DeflateName = "permessage-deflate"

// WindowBitsNoValue is Deflate.ClientMaxWindowBits for a
// client_max_window_bits parameter sent without a value, which only an
// offer may do (RFC 7692 §7.1.2.2).
const WindowBitsNoValue = -1

// Deflate is one permessage-deflate offer or response: its parameters
// (RFC 7692 §7.1). Window bits are 8–15, 0 when the parameter is absent.
type Deflate struct {
	ServerNoContextTakeover bool
	ClientNoContextTakeover bool
	ServerMaxWindowBits     int
	ClientMaxWindowBits     int // or WindowBitsNoValue (offers only)
}

// String renders d as a Sec-WebSocket-Extensions element, parameters in a
// fixed order.
func (d Deflate) String() string { return string(d.append(nil)) }

func (d Deflate) append(dst []byte) []byte {
	dst = append(dst, DeflateName...)
	if d.ServerNoContextTakeover {
		dst = append(dst, "; server_no_context_takeover"...)
	}
	if d.ClientNoContextTakeover {
		dst = append(dst, "; client_no_context_takeover"...)
	}
	if d.ServerMaxWindowBits > 0 {
		dst = append(dst, "; server_max_window_bits="...)
		dst = strconv.AppendInt(dst, int64(d.ServerMaxWindowBits), 10)
	}
	switch {
	case d.ClientMaxWindowBits == WindowBitsNoValue:
		dst = append(dst, "; client_max_window_bits"...)
	case d.ClientMaxWindowBits > 0:
		dst = append(dst, "; client_max_window_bits="...)
		dst = strconv.AppendInt(dst, int64(d.ClientMaxWindowBits), 10)
	}
	return dst
}

// Errors of ParseDeflate. A bad offer from a client is declined (dropped),
// never an error of the handshake (RFC 7692 §7.1: the server "MUST decline"
// such an offer); a bad response from an upstream fails it (502).
var (
	errNotDeflate   = errors.New("not permessage-deflate")
	errDupParam     = errors.New("duplicate parameter")
	errUnknownParam = errors.New("unknown parameter")
	errParamValue   = errors.New("invalid parameter value")
	errSyntax       = errors.New("malformed extension element")
)

// ParseDeflate parses one Sec-WebSocket-Extensions element (as split by
// Check) as permessage-deflate. response selects the rules of a server's
// response: client_max_window_bits must then carry a value (RFC 7692
// §7.1.2.2). Parameter names and the extension name compare ASCII
// case-insensitively; a value may be a token or a quoted string whose
// content is a token (RFC 6455 §9.1). RFC 7692 §7.1 fails an element with
// an unknown parameter, a parameter given twice or a bad value.
func ParseDeflate(elem string, response bool) (Deflate, error) {
	var d Deflate
	name, rest, _ := strings.Cut(elem, ";")
	if !strings.EqualFold(trimOWS(name), DeflateName) {
		return d, errNotDeflate
	}
	var seen [4]bool
	for rest != "" {
		var p string
		var err error
		p, rest, err = cutParam(rest)
		if err != nil {
			return d, err
		}
		pname, value, hasValue := strings.Cut(p, "=")
		pname = trimOWS(pname)
		if hasValue {
			if value, err = paramValue(trimOWS(value)); err != nil {
				return d, err
			}
		}
		var idx int
		switch {
		case strings.EqualFold(pname, "server_no_context_takeover"):
			idx = 0
			d.ServerNoContextTakeover = true
		case strings.EqualFold(pname, "client_no_context_takeover"):
			idx = 1
			d.ClientNoContextTakeover = true
		case strings.EqualFold(pname, "server_max_window_bits"):
			idx = 2
			if !hasValue {
				return d, fmt.Errorf("%w: server_max_window_bits needs a value", errParamValue)
			}
			if d.ServerMaxWindowBits, err = windowBits(value); err != nil {
				return d, err
			}
		case strings.EqualFold(pname, "client_max_window_bits"):
			idx = 3
			switch {
			case hasValue:
				if d.ClientMaxWindowBits, err = windowBits(value); err != nil {
					return d, err
				}
			case response:
				return d, fmt.Errorf("%w: client_max_window_bits needs a value in a response", errParamValue)
			default:
				d.ClientMaxWindowBits = WindowBitsNoValue
			}
		default:
			return d, fmt.Errorf("%w %q", errUnknownParam, pname)
		}
		if idx < 2 && hasValue {
			return d, fmt.Errorf("%w: %s takes no value", errParamValue, pname)
		}
		if seen[idx] {
			return d, fmt.Errorf("%w %q", errDupParam, pname)
		}
		seen[idx] = true
	}
	return d, nil
}

// cutParam splits the first ";"-separated parameter off s, honouring
// quoted strings.
func cutParam(s string) (param, rest string, err error) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			return trimOWS(s[:i]), s[i+1:], nilIfToken(s[:i])
		}
	}
	if quoted {
		return "", "", errSyntax
	}
	return trimOWS(s), "", nilIfToken(s)
}

// nilIfToken checks that a parameter's name is a token.
func nilIfToken(p string) error {
	name, _, _ := strings.Cut(p, "=")
	if !validToken(trimOWS(name)) {
		return errSyntax
	}
	return nil
}

// paramValue returns a parameter's value, unquoted: a token, or a quoted
// string whose content is a token (RFC 6455 §9.1).
func paramValue(v string) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			c := v[i]
			if c == '\\' && i+1 < len(v)-1 {
				i++
				c = v[i]
			}
			b.WriteByte(c)
		}
		v = b.String()
	}
	if !validToken(v) {
		return "", fmt.Errorf("%w %q", errParamValue, v)
	}
	return v, nil
}

// windowBits parses a window size: 8 to 15 in decimal, no leading zeros
// (RFC 7692 §7.1.2).
func windowBits(v string) (int, error) {
	if len(v) < 1 || len(v) > 2 || v[0] == '0' {
		return 0, fmt.Errorf("%w: window bits %q (want 8 to 15)", errParamValue, v)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 8 || n > 15 {
		return 0, fmt.Errorf("%w: window bits %q (want 8 to 15)", errParamValue, v)
	}
	return n, nil
}

// DeflateOffer is what the gateway offers an upstream: the client's valid
// permessage-deflate offers in its order, each with
// server_no_context_takeover added unless the route allows context
// takeover.
type DeflateOffer struct {
	Offers          []Deflate
	ContextTakeover bool
}

// OfferDeflate builds the upstream offer from the client's extension
// offers (Request.Extensions). Other extensions and invalid
// permessage-deflate offers are dropped (RFC 7692 §7.1: a server declines
// an offer it cannot accept). It returns nil when nothing is left to offer.
func OfferDeflate(clientOffers []string, contextTakeover bool) *DeflateOffer {
	var o *DeflateOffer
	for _, e := range clientOffers {
		d, err := ParseDeflate(e, false)
		if err != nil {
			continue
		}
		if !contextTakeover {
			d.ServerNoContextTakeover = true
		}
		if o == nil {
			o = &DeflateOffer{ContextTakeover: contextTakeover}
		}
		o.Offers = append(o.Offers, d)
	}
	return o
}

// String is the Sec-WebSocket-Extensions value sent upstream.
func (o *DeflateOffer) String() string {
	var b []byte
	for i, d := range o.Offers {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = d.append(b)
	}
	return string(b)
}

// Accept checks the upstream's Sec-WebSocket-Extensions field lines
// against the offers (RFC 6455 §4.1 client step 5, RFC 7692 §7.1): no
// field means nothing was negotiated (ok false); otherwise it must be
// exactly one permessage-deflate element, valid as a response, that
// accepts one of the offers. The error wraps ErrBadExtension.
func (o *DeflateOffer) Accept(values []string) (d Deflate, ok bool, err error) {
	elems := splitExtensions(values)
	switch len(elems) {
	case 0:
		return d, false, nil
	case 1:
	default:
		return d, false, fmt.Errorf("%w (%q: more than one extension)", ErrBadExtension, values)
	}
	d, err = ParseDeflate(elems[0], true)
	if err != nil {
		return d, false, fmt.Errorf("%w (%q: %v)", ErrBadExtension, elems[0], err)
	}
	for _, off := range o.Offers {
		if accepts(off, d) {
			return d, true, nil
		}
	}
	return d, false, fmt.Errorf("%w (%q answers none of the offers %q)", ErrBadExtension, elems[0], o.String())
}

// accepts reports whether response r is a valid answer to offer off
// (RFC 7692 §7.1.1, §7.1.2).
func accepts(off, r Deflate) bool {
	// §7.1.1.1: a server accepting server_no_context_takeover must say so.
	if off.ServerNoContextTakeover && !r.ServerNoContextTakeover {
		return false
	}
	// §7.1.2.1: an offered server_max_window_bits must be answered with the
	// same or a smaller value; unoffered, the server may still limit itself.
	if off.ServerMaxWindowBits > 0 && (r.ServerMaxWindowBits == 0 || r.ServerMaxWindowBits > off.ServerMaxWindowBits) {
		return false
	}
	// §7.1.2.2: client_max_window_bits only if offered, and not above the
	// offered value.
	if r.ClientMaxWindowBits > 0 {
		switch {
		case off.ClientMaxWindowBits == 0:
			return false
		case off.ClientMaxWindowBits > 0 && r.ClientMaxWindowBits > off.ClientMaxWindowBits:
			return false
		}
	}
	return true
}

// ClientResponse is the response the client gets for the upstream's
// accepted d: the same parameters, plus client_no_context_takeover when
// the route allows no context takeover (RFC 7692 §7.1.1.2 lets a server
// add it to any response).
func (o *DeflateOffer) ClientResponse(d Deflate) Deflate {
	if !o.ContextTakeover {
		d.ClientNoContextTakeover = true
	}
	return d
}

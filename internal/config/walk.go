package config

import (
	"fmt"
	"net/netip"
	"slices"
	"wsgate/internal/config/yamlwalk"
)

// parser walks a config document (yamlwalk) and keeps what the checks
// across blocks need.
type parser struct {
	*yamlwalk.Walker
	certs   []certInfo
	certsOK bool // every certificate loaded (coverage checks are meaningful)
}

type certInfo struct {
	names []string
	ips   []netip.Addr
}

// sizeVal accepts a YAML integer (bytes) or a size string, at least lo.
func (p *parser) sizeVal(v yamlwalk.Val, lo Size) (Size, bool) {
	n, ok := p.Scalar(v, "a size like 64KiB")
	if !ok {
		return 0, false
	}
	var s Size
	switch n.ShortTag() {
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			p.Errf(v.Line, v.Key, "size %s is too large", yamlwalk.Clip(n.Value))
			return 0, false
		}
		if i < 0 {
			p.Errf(v.Line, v.Key, "size %d must not be negative", i)
			return 0, false
		}
		s = Size(i)
	case "!!str":
		var err error
		if s, err = ParseSize(n.Value); err != nil {
			p.Errf(v.Line, v.Key, "%v", err)
			return 0, false
		}
	default:
		p.Errf(v.Line, v.Key, "want a size like 64KiB or a whole number of bytes, got %s", yamlwalk.Describe(n))
		return 0, false
	}
	if s < lo {
		if lo == 1 {
			p.Errf(v.Line, v.Key, "must be greater than 0")
		} else {
			p.Errf(v.Line, v.Key, "%s is too small (minimum %s)", s, lo)
		}
		return 0, false
	}
	p.Accept(v)
	return s, true
}

// unknown reports a key that has no meaning where it is.
func (p *parser) unknown(f yamlwalk.Field, known []string) {
	msg := "unknown key"
	if s := yamlwalk.Suggest(f.Name, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else if slices.Contains(settingKeys, f.Name) {
		msg += " (route settings go under defaults: or in a route)"
	} else if slices.Contains(routeKeys, f.Name) {
		msg += " (route keys go in an entry of routes:)"
	}
	p.Errf(f.KeyLine, f.V.Key, "%s", msg)
}

package config

// Decoding the YAML tree and reading typed values from it: every problem
// carries its file, line and dotted key.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ---------------------------------------------------------------------------
// Decoding the YAML tree.

// nodeBudget caps the nodes the walk visits. Aliases are followed, so a small
// file could otherwise expand exponentially ("billion laughs").
const nodeBudget = 1_000_000

type parser struct {
	file      string
	errs      []*Error
	warns     []*Error
	lines     map[string]int // dotted key -> line, for every value accepted
	budget    int
	exhausted bool
	// errsAtExhaustion is len(errs) once the budget ran out.
	errsAtExhaustion int
	certs            []certInfo
	certsOK          bool // every certificate loaded (coverage checks are meaningful)
}

type certInfo struct {
	names []string
	ips   []netip.Addr
}

func (p *parser) errf(line int, key, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) warnf(line int, key, format string, args ...any) {
	p.warns = append(p.warns, &Error{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems start the messages of yaml.v3's parser (as opposed to
// its scanner). For those it reports the 0-based line of the enclosing block
// or of the problem (go-yaml/yaml#205), one less than the line to show.
var yamlParserProblems = []string{"did not find expected", "found duplicate %", "found incompatible YAML document", "found undefined tag handle"}

func (p *parser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		for _, prefix := range yamlParserProblems {
			if strings.HasPrefix(m[2], prefix) {
				line++
				break
			}
		}
		p.errf(line, "", "YAML syntax: %s", m[2])
		return
	}
	p.errf(0, "", "YAML syntax: %s", strings.TrimPrefix(msg, "yaml: "))
}

// decode parses the first YAML document; nil means an empty file. A YAML
// library panic is turned into an error: a reload must never bring the
// gateway down.
func (p *parser) decode(data []byte) (root *yaml.Node) {
	defer func() {
		if r := recover(); r != nil {
			p.errf(0, "", "YAML parser failed: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			p.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.errf(extra.Line, "", "more than one YAML document in the file (a second \"---\")")
	case errors.Is(err, io.EOF):
	default:
		p.yamlError(err)
	}
	return &doc
}

// spend charges n nodes to the budget and reports whether the walk may go on.
func (p *parser) spend(n, line int) bool {
	p.budget -= n
	if p.budget < 0 {
		if !p.exhausted {
			// Report it without a line (the walk was somewhere deep inside
			// aliases), and drop what follows: a cut-short walk only
			// produces noise.
			p.exhausted = true
			p.errf(0, "", "document too large or too much aliasing (over %d nodes)", nodeBudget)
			p.errsAtExhaustion = len(p.errs)
		}
		return false
	}
	return true
}

// deref follows aliases and unwraps documents.
func deref(n *yaml.Node) *yaml.Node {
	for range 100 {
		if n == nil {
			return nil
		}
		switch n.Kind {
		case yaml.AliasNode:
			n = n.Alias
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		default:
			return n
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	n = deref(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean (" + n.Value + ")"
		case "!!int":
			return "an integer (" + n.Value + ")"
		case "!!float":
			return "a number (" + n.Value + ")"
		case "!!str":
			return strconv.Quote(clip(n.Value))
		default:
			return "a value tagged " + n.Tag
		}
	}
	return "an unsupported YAML node"
}

// clip shortens a value quoted back in a message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// val is a value in the tree with the key it sits under.
type val struct {
	n    *yaml.Node
	key  string
	line int
}

// field is one key of a mapping.
type field struct {
	name    string
	keyLine int
	v       val
}

func join(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

func index(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }

func lineOf(n *yaml.Node, fallback int) int {
	if n != nil && n.Line > 0 {
		return n.Line
	}
	return fallback
}

// fields returns the known keys of a mapping in file order, with merge keys
// ("<<") expanded and null values dropped (a key with no value counts as
// absent). Unknown and duplicate keys are reported and left out. A nil known
// accepts every key and keeps nulls.
func (p *parser) fields(v val, known []string) []field {
	n := deref(v.n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errf(v.line, v.key, "want a mapping (key: value lines), got %s", describe(n))
		return nil
	}
	if !p.spend(len(n.Content), v.line) {
		return nil
	}
	var out, merged []field
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, vn := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, p.mergeFields(val{vn, v.key, lineOf(vn, k.Line)}, known)...)
			continue
		}
		kd := deref(k)
		if kd == nil || kd.Kind != yaml.ScalarNode {
			p.errf(lineOf(k, v.line), v.key, "keys must be plain strings, got %s", describe(k))
			continue
		}
		name := kd.Value
		key := join(v.key, name)
		if first, dup := seen[name]; dup {
			p.errf(k.Line, key, "duplicate key (first at line %d)", first)
			continue
		}
		seen[name] = k.Line
		// A value is reported at its key's line: for a block mapping or list
		// that is the line naming it, not the line of its first entry.
		f := field{name: name, keyLine: k.Line, v: val{vn, key, lineOf(k, v.line)}}
		if known == nil { // free-form mapping (set_headers): every key, nulls too
			out = append(out, f)
			continue
		}
		if !slices.Contains(known, name) {
			p.unknown(f, known)
			continue
		}
		if isNull(vn) {
			continue
		}
		out = append(out, f)
	}
	// Keys written in the mapping win over merged ones (YAML merge semantics).
	for _, f := range merged {
		if _, ok := seen[f.name]; !ok {
			seen[f.name] = f.keyLine
			out = append(out, f)
		}
	}
	return out
}

func (p *parser) mergeFields(v val, known []string) []field {
	n := deref(v.n)
	if n != nil && n.Kind == yaml.SequenceNode {
		var out []field
		for _, item := range p.items(v) {
			out = append(out, p.fields(item, known)...)
		}
		return out
	}
	return p.fields(v, known)
}

// items returns the entries of a list.
func (p *parser) items(v val) []val {
	n := deref(v.n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(v.line, v.key, "want a list, got %s", describe(n))
		return nil
	}
	if !p.spend(len(n.Content), v.line) {
		return nil
	}
	out := make([]val, len(n.Content))
	for i, c := range n.Content {
		out[i] = val{c, index(v.key, i), lineOf(c, v.line)}
	}
	return out
}

// accept records where a successfully parsed value came from.
func (p *parser) accept(v val) { p.lines[v.key] = v.line }

func (p *parser) scalar(v val, want string) (*yaml.Node, bool) {
	n := deref(v.n)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		p.errf(v.line, v.key, "want %s, got %s", want, describe(v.n))
		return nil, false
	}
	return n, true
}

func (p *parser) str(v val) (string, bool) {
	n, ok := p.scalar(v, "a string")
	if !ok {
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
		p.accept(v)
		return n.Value, true
	}
	p.errf(v.line, v.key, "want a string, got %s (quote it)", describe(n))
	return "", false
}

func (p *parser) boolean(v val) (bool, bool) {
	n, ok := p.scalar(v, "true or false")
	if !ok {
		return false, false
	}
	if n.ShortTag() != "!!bool" {
		p.errf(v.line, v.key, "want true or false, got %s", describe(n))
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		p.errf(v.line, v.key, "want true or false, got %s", describe(n))
		return false, false
	}
	p.accept(v)
	return b, true
}

// integer accepts a YAML integer or a string of decimal digits, within [lo, hi].
func (p *parser) integer(v val, lo, hi int64) (int64, bool) {
	n, ok := p.scalar(v, "an integer")
	if !ok {
		return 0, false
	}
	var i int64
	var err error
	switch n.ShortTag() {
	case "!!int":
		err = n.Decode(&i)
	case "!!str":
		i, err = strconv.ParseInt(n.Value, 10, 64)
	default:
		err = errors.New("not an integer")
	}
	if err != nil {
		p.errf(v.line, v.key, "want an integer, got %s", describe(n))
		return 0, false
	}
	if i < lo || i > hi {
		switch {
		case hi == math.MaxInt64:
			p.errf(v.line, v.key, "%d is out of range (must be at least %d)", i, lo)
		default:
			p.errf(v.line, v.key, "%d is out of range (must be %d to %d)", i, lo, hi)
		}
		return 0, false
	}
	p.accept(v)
	return i, true
}

func (p *parser) durationVal(v val) (time.Duration, bool) {
	n, ok := p.scalar(v, "a duration like 10s")
	if !ok {
		return 0, false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
	default:
		p.errf(v.line, v.key, "want a duration like 10s, got %s", describe(n))
		return 0, false
	}
	d, err := parseDuration(n.Value)
	if err != nil {
		p.errf(v.line, v.key, "%v", err)
		return 0, false
	}
	p.accept(v)
	return d, true
}

// positiveDuration is durationVal that also refuses zero.
func (p *parser) positiveDuration(v val) (time.Duration, bool) {
	d, ok := p.durationVal(v)
	if ok && d == 0 {
		p.errf(v.line, v.key, "must be greater than 0")
		delete(p.lines, v.key)
		return 0, false
	}
	return d, ok
}

// sizeVal accepts a YAML integer (bytes) or a size string, at least lo.
func (p *parser) sizeVal(v val, lo Size) (Size, bool) {
	n, ok := p.scalar(v, "a size like 64KiB")
	if !ok {
		return 0, false
	}
	var s Size
	switch n.ShortTag() {
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			p.errf(v.line, v.key, "size %s is too large", clip(n.Value))
			return 0, false
		}
		if i < 0 {
			p.errf(v.line, v.key, "size %d must not be negative", i)
			return 0, false
		}
		s = Size(i)
	case "!!str":
		var err error
		if s, err = ParseSize(n.Value); err != nil {
			p.errf(v.line, v.key, "%v", err)
			return 0, false
		}
	default:
		p.errf(v.line, v.key, "want a size like 64KiB or a whole number of bytes, got %s", describe(n))
		return 0, false
	}
	if s < lo {
		if lo == 1 {
			p.errf(v.line, v.key, "must be greater than 0")
		} else {
			p.errf(v.line, v.key, "%s is too small (minimum %s)", s, lo)
		}
		return 0, false
	}
	p.accept(v)
	return s, true
}

// oneOf accepts one of the listed strings.
func (p *parser) oneOf(v val, choices ...string) (string, bool) {
	s, ok := p.str(v)
	if !ok {
		return "", false
	}
	if !slices.Contains(choices, s) {
		delete(p.lines, v.key)
		p.errf(v.line, v.key, "%q is not one of %s", clip(s), strings.Join(choices, ", "))
		return "", false
	}
	return s, true
}

// unknown reports a key that has no meaning where it is.
func (p *parser) unknown(f field, known []string) {
	msg := "unknown key"
	if s := suggest(f.name, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else if slices.Contains(settingKeys, f.name) {
		msg += " (route settings go under defaults: or in a route)"
	} else if slices.Contains(routeKeys, f.name) {
		msg += " (route keys go in an entry of routes:)"
	}
	p.errf(f.keyLine, f.v.key, "%s", msg)
}

// suggest returns the known key closest to name, if it is close enough to be
// a typo.
func suggest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Package yamlwalk walks a YAML document by hand, as a yaml.Node tree,
// instead of unmarshalling it into structs: that is what lets every problem
// carry its file, line and dotted key, lets unknown keys be reported (with
// the closest known key as a suggestion), and lets the walk go on after the
// first problem so that all of them are reported at once. It follows
// aliases and merge keys under a node budget. It knows nothing of the
// gateway's schema: internal/config builds on it.
package yamlwalk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a document.
type Error struct {
	File string
	Line int    // 0 when the problem has no line (e.g. the file cannot be read)
	Key  string // dotted path, e.g. "routes[1].upstreams[0]"; "" for the document
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// NodeBudget caps the nodes a walk visits by default. Aliases are followed,
// so a small file could otherwise expand exponentially ("billion laughs").
const NodeBudget = 1_000_000

// Walker walks one document: it collects every problem (Errs, Warns) with
// its file, line and dotted key, and the line of every value accepted.
type Walker struct {
	File string
	// Unknown reports a key that has no meaning where it is (Fields calls
	// it); nil: "unknown key", with the closest known key as a suggestion.
	Unknown func(f Field, known []string)
	Errs    []*Error
	Warns   []*Error
	Lines   map[string]int // dotted key -> line, for every value accepted
	// budget is what is left of the node budget; exhausted is set once it
	// ran out, when len(Errs) was errsAtExhaustion.
	budget           int
	exhausted        bool
	errsAtExhaustion int
}

// New returns a walker of the document file that visits at most budget
// nodes.
func New(file string, budget int) *Walker {
	return &Walker{File: file, Lines: map[string]int{}, budget: budget}
}

// Trim drops the problems found after the node budget ran out: a walk cut
// short only produces noise.
func (p *Walker) Trim() {
	if p.exhausted {
		p.Errs = p.Errs[:p.errsAtExhaustion]
	}
}

func (p *Walker) Errf(line int, key, format string, args ...any) {
	p.Errs = append(p.Errs, &Error{File: p.File, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (p *Walker) Warnf(line int, key, format string, args ...any) {
	p.Warns = append(p.Warns, &Error{File: p.File, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems start the messages of yaml.v3's parser (as opposed to
// its scanner). For those it reports the 0-based line of the enclosing block
// or of the problem (go-yaml/yaml#205), one less than the line to show.
var yamlParserProblems = []string{"did not find expected", "found duplicate %", "found incompatible YAML document", "found undefined tag handle"}

func (p *Walker) YAMLError(err error) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		for _, prefix := range yamlParserProblems {
			if strings.HasPrefix(m[2], prefix) {
				line++
				break
			}
		}
		p.Errf(line, "", "YAML syntax: %s", m[2])
		return
	}
	p.Errf(0, "", "YAML syntax: %s", strings.TrimPrefix(msg, "yaml: "))
}

// Decode parses the first YAML document; nil means an empty file. A YAML
// library panic is turned into an error: a reload must never bring the
// gateway down.
func (p *Walker) Decode(data []byte) (root *yaml.Node) {
	defer func() {
		if r := recover(); r != nil {
			p.Errf(0, "", "YAML parser failed: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			p.YAMLError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.Errf(extra.Line, "", "more than one YAML document in the file (a second \"---\")")
	case errors.Is(err, io.EOF):
	default:
		p.YAMLError(err)
	}
	return &doc
}

// Spend charges n nodes to the budget and reports whether the walk may go on.
func (p *Walker) Spend(n, line int) bool {
	p.budget -= n
	if p.budget < 0 {
		if !p.exhausted {
			// Report it without a line (the walk was somewhere deep inside
			// aliases), and drop what follows: a cut-short walk only
			// produces noise.
			p.exhausted = true
			p.Errf(0, "", "document too large or too much aliasing (over %d nodes)", NodeBudget)
			p.errsAtExhaustion = len(p.Errs)
		}
		return false
	}
	return true
}

// Deref follows aliases and unwraps documents.
func Deref(n *yaml.Node) *yaml.Node {
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

func IsNull(n *yaml.Node) bool {
	n = Deref(n)
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func Describe(n *yaml.Node) string {
	n = Deref(n)
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
			return strconv.Quote(Clip(n.Value))
		default:
			return "a value tagged " + n.Tag
		}
	}
	return "an unsupported YAML node"
}

// Clip shortens a value quoted back in a message.
func Clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// Val is a value in the tree with the key it sits under.
type Val struct {
	N    *yaml.Node
	Key  string
	Line int
}

// Field is one key of a mapping.
type Field struct {
	Name    string
	KeyLine int
	V       Val
}

func Join(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

func Index(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }

func LineOf(n *yaml.Node, fallback int) int {
	if n != nil && n.Line > 0 {
		return n.Line
	}
	return fallback
}

// Fields returns the known keys of a mapping in file order, with merge keys
// ("<<") expanded and null values dropped (a key with no value counts as
// absent). Unknown and duplicate keys are reported and left out. A nil known
// accepts every key and keeps nulls.
func (p *Walker) Fields(v Val, known []string) []Field {
	n := Deref(v.N)
	if IsNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.Errf(v.Line, v.Key, "want a mapping (key: value lines), got %s", Describe(n))
		return nil
	}
	if !p.Spend(len(n.Content), v.Line) {
		return nil
	}
	var out, merged []Field
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, vn := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, p.MergeFields(Val{vn, v.Key, LineOf(vn, k.Line)}, known)...)
			continue
		}
		kd := Deref(k)
		if kd == nil || kd.Kind != yaml.ScalarNode {
			p.Errf(LineOf(k, v.Line), v.Key, "keys must be plain strings, got %s", Describe(k))
			continue
		}
		name := kd.Value
		key := Join(v.Key, name)
		if first, dup := seen[name]; dup {
			p.Errf(k.Line, key, "duplicate key (first at line %d)", first)
			continue
		}
		seen[name] = k.Line
		// A value is reported at its key's line: for a block mapping or list
		// that is the line naming it, not the line of its first entry.
		f := Field{Name: name, KeyLine: k.Line, V: Val{vn, key, LineOf(k, v.Line)}}
		if known == nil { // free-form mapping (set_headers): every key, nulls too
			out = append(out, f)
			continue
		}
		if !slices.Contains(known, name) {
			p.unknown(f, known)
			continue
		}
		if IsNull(vn) {
			continue
		}
		out = append(out, f)
	}
	// Keys written in the mapping win over merged ones (YAML merge semantics).
	for _, f := range merged {
		if _, ok := seen[f.Name]; !ok {
			seen[f.Name] = f.KeyLine
			out = append(out, f)
		}
	}
	return out
}

func (p *Walker) MergeFields(v Val, known []string) []Field {
	n := Deref(v.N)
	if n != nil && n.Kind == yaml.SequenceNode {
		var out []Field
		for _, item := range p.Items(v) {
			out = append(out, p.Fields(item, known)...)
		}
		return out
	}
	return p.Fields(v, known)
}

// Items returns the entries of a list.
func (p *Walker) Items(v Val) []Val {
	n := Deref(v.N)
	if IsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.Errf(v.Line, v.Key, "want a list, got %s", Describe(n))
		return nil
	}
	if !p.Spend(len(n.Content), v.Line) {
		return nil
	}
	out := make([]Val, len(n.Content))
	for i, c := range n.Content {
		out[i] = Val{c, Index(v.Key, i), LineOf(c, v.Line)}
	}
	return out
}

// Accept records where a successfully parsed value came from.
func (p *Walker) Accept(v Val) { p.Lines[v.Key] = v.Line }

func (p *Walker) Scalar(v Val, want string) (*yaml.Node, bool) {
	n := Deref(v.N)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		p.Errf(v.Line, v.Key, "want %s, got %s", want, Describe(v.N))
		return nil, false
	}
	return n, true
}

func (p *Walker) Str(v Val) (string, bool) {
	n, ok := p.Scalar(v, "a string")
	if !ok {
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
		p.Accept(v)
		return n.Value, true
	}
	p.Errf(v.Line, v.Key, "want a string, got %s (quote it)", Describe(n))
	return "", false
}

func (p *Walker) Bool(v Val) (bool, bool) {
	n, ok := p.Scalar(v, "true or false")
	if !ok {
		return false, false
	}
	if n.ShortTag() != "!!bool" {
		p.Errf(v.Line, v.Key, "want true or false, got %s", Describe(n))
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		p.Errf(v.Line, v.Key, "want true or false, got %s", Describe(n))
		return false, false
	}
	p.Accept(v)
	return b, true
}

// Int accepts a YAML Int or a string of decimal digits, within [lo, hi].
func (p *Walker) Int(v Val, lo, hi int64) (int64, bool) {
	n, ok := p.Scalar(v, "an integer")
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
		p.Errf(v.Line, v.Key, "want an integer, got %s", Describe(n))
		return 0, false
	}
	if i < lo || i > hi {
		switch {
		case hi == math.MaxInt64:
			p.Errf(v.Line, v.Key, "%d is out of range (must be at least %d)", i, lo)
		default:
			p.Errf(v.Line, v.Key, "%d is out of range (must be %d to %d)", i, lo, hi)
		}
		return 0, false
	}
	p.Accept(v)
	return i, true
}

func (p *Walker) Duration(v Val) (time.Duration, bool) {
	n, ok := p.Scalar(v, "a duration like 10s")
	if !ok {
		return 0, false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
	default:
		p.Errf(v.Line, v.Key, "want a duration like 10s, got %s", Describe(n))
		return 0, false
	}
	d, err := ParseDuration(n.Value)
	if err != nil {
		p.Errf(v.Line, v.Key, "%v", err)
		return 0, false
	}
	p.Accept(v)
	return d, true
}

// PositiveDuration is durationVal that also refuses zero.
func (p *Walker) PositiveDuration(v Val) (time.Duration, bool) {
	d, ok := p.Duration(v)
	if ok && d == 0 {
		p.Errf(v.Line, v.Key, "must be greater than 0")
		delete(p.Lines, v.Key)
		return 0, false
	}
	return d, ok
}

// OneOf accepts one of the listed strings.
func (p *Walker) OneOf(v Val, choices ...string) (string, bool) {
	s, ok := p.Str(v)
	if !ok {
		return "", false
	}
	if !slices.Contains(choices, s) {
		delete(p.Lines, v.Key)
		p.Errf(v.Line, v.Key, "%q is not one of %s", Clip(s), strings.Join(choices, ", "))
		return "", false
	}
	return s, true
}

// Suggest returns the known key closest to name, if it is close enough to be
// a typo.
func Suggest(name string, known []string) string {
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

// ParseDuration parses a Go duration ("10s", "1m30s", "0") and rejects
// negative values, which mean nothing for a timeout or an interval.
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, numErr := strconv.ParseFloat(s, 64); numErr == nil {
			return 0, fmt.Errorf("bad duration %q: missing unit (write e.g. 10s, 2m)", s)
		}
		return 0, fmt.Errorf("bad duration %q: want Go syntax like 10s, 2m, 1h30m", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q must not be negative", s)
	}
	return d, nil
}

func (p *Walker) unknown(f Field, known []string) {
	if p.Unknown != nil {
		p.Unknown(f, known)
		return
	}
	msg := "unknown key"
	if s := Suggest(f.Name, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	p.Errf(f.KeyLine, f.V.Key, "%s", msg)
}

package yamlwalk

import (
	"strings"
	"testing"
)

// A walk reports every problem with its line and dotted key, suggests the
// closest known key, and keeps the line of each value it accepted.
func TestWalkProblemsAndLines(t *testing.T) {
	w := New("t.yaml", NodeBudget)
	root := w.Decode([]byte("name: x\nport: nine\nlisen: :80\n"))
	var port int64
	for _, f := range w.Fields(Val{N: root, Line: 1}, []string{"name", "port", "listen"}) {
		switch f.Name {
		case "name":
			w.Str(f.V)
		case "port":
			port, _ = w.Int(f.V, 1, 65535)
		}
	}
	got := make([]string, len(w.Errs))
	for i, e := range w.Errs {
		got[i] = e.Error()
	}
	want := []string{ // in walk order: unknown keys while listing the fields
		`t.yaml:3: lisen: unknown key (did you mean "listen"?)`,
		`t.yaml:2: port: want an integer`,
	}
	if len(got) != len(want) {
		t.Fatalf("problems %q, want %d", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
	if port != 0 || w.Lines["name"] != 1 {
		t.Errorf("port %d, line of name %d; want 0 and 1", port, w.Lines["name"])
	}
}

// Aliases are followed under the node budget: a "billion laughs" document
// stops the walk with one problem instead of expanding.
func TestWalkBudget(t *testing.T) {
	doc := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for i := range 8 {
		name := string(rune('b' + i))
		doc += name + ": &" + name + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev +
			", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n"
		prev = name
	}
	w := New("bomb.yaml", 10_000)
	root := w.Decode([]byte(doc))
	var walk func(v Val)
	walk = func(v Val) {
		if n := Deref(v.N); n != nil && n.Kind == 2 /* yaml.SequenceNode */ {
			for _, it := range w.Items(v) {
				walk(it)
			}
		}
	}
	for _, f := range w.Fields(Val{N: root, Line: 1}, nil) {
		walk(f.V)
	}
	w.Trim()
	if len(w.Errs) != 1 || !strings.Contains(w.Errs[0].Msg, "too much aliasing") {
		t.Fatalf("problems %v, want the one budget problem", w.Errs)
	}
}

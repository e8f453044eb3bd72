package proxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"wsgate/internal/config"
	"wsgate/internal/relay"
)

func TestParseTags(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxTagLen)
	many := make([]string, maxTags+5)
	for i := range many {
		many[i] = "t" + itoa(i)
	}
	for _, c := range []struct {
		in      []string
		want    string
		dropped int
	}{
		{[]string{"room:42, user:7"}, "room:42|user:7", 0},
		{[]string{"a,,b , a", "c"}, "a|b|c", 0},
		{[]string{" "}, "", 0},
		{[]string{long + "," + long + "y"}, long, 1},
		{[]string{"with space,tab\there,ok,ctl\x01,é"}, "ok", 4},
		{[]string{strings.Join(many, ",")}, strings.Join(many[:maxTags], "|"), 5},
	} {
		got, dropped := parseTags(c.in)
		if strings.Join(got, "|") != c.want || dropped != c.dropped {
			t.Errorf("parseTags(%q) = %q (%d dropped), want %q (%d)", c.in, got, dropped, c.want, c.dropped)
		}
	}
}

func FuzzParseTags(f *testing.F) {
	for _, s := range []string{"room:42, user:7", "", ",,,", "a b,c", strings.Repeat("t,", 100), "\xff,ok"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tags, _ := parseTags([]string{v})
		if len(tags) > maxTags {
			t.Fatalf("%d tags", len(tags))
		}
		seen := map[string]bool{}
		for _, tag := range tags {
			if tag == "" || len(tag) > maxTagLen || !isVisibleASCII(tag) || strings.Contains(tag, ",") || seen[tag] {
				t.Fatalf("bad tag %q in %q", tag, tags)
			}
			seen[tag] = true
		}
	})
}

func TestSessionID(t *testing.T) {
	t.Parallel()
	a, b := newSessionID(), newSessionID()
	if a == b {
		t.Fatal("two equal session ids")
	}
	s := a.String()
	if len(s) != 22 || strings.ContainsAny(s, "+/=") {
		t.Errorf("id %q: want 22 characters of base64url without padding", s)
	}
	if got, ok := parseSessionID(s); !ok || got != a {
		t.Errorf("parseSessionID(%q) = %v %v", s, got, ok)
	}
	for _, bad := range []string{"", "x", s + "A", s[:21], strings.Repeat("A", 21) + "B", "AAAAAAAAAAAAAAAAAAAA+/", "AAAAAAAAAAAAAAAAAAAAAA=="} {
		if _, ok := parseSessionID(bad); ok {
			t.Errorf("parseSessionID(%q) accepted", bad)
		}
	}
}

func FuzzParseSessionID(f *testing.F) {
	f.Add(newSessionID().String())
	f.Add("AAAAAAAAAAAAAAAAAAAAAB")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := parseSessionID(s)
		if ok && id.String() != s {
			t.Fatalf("%q parsed to %v, which prints as %q", s, id, id.String())
		}
	})
}

func TestAdminCloseCode(t *testing.T) {
	t.Parallel()
	ok := map[int]bool{1000: true, 1001: true, 1008: true, 1011: true, 1012: true, 1013: true}
	for c := 0; c <= 5000; c++ {
		want := ok[c] || c >= 3000 && c <= 4999
		if adminCloseCode(c) != want {
			t.Errorf("adminCloseCode(%d) = %v, want %v", c, !want, want)
		}
	}
}

func TestIsTextType(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bool{
		"text/plain": true, "text/plain; charset=utf-8": true, "TEXT/HTML": true, "application/json": true,
		"application/json; charset=utf-8": true, "application/octet-stream": false, "": false,
		"application/jsonx": false, "image/png": false,
	} {
		if isTextType(ct) != want {
			t.Errorf("isTextType(%q) = %v", ct, !want)
		}
	}
	_ = utf8.RuneError
}

// addrListener is a listener that only reports an address.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

// TestWarnOpenAdmin: the gateway warns at start when the admin listener
// is not on loopback and no token is set, and only then.
func TestWarnOpenAdmin(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		addr  string
		token bool
		warn  bool
	}{
		{"127.0.0.1:9090", false, false},
		{"[::1]:9090", false, false},
		{"0.0.0.0:9090", false, true},
		{"10.1.2.3:9090", false, true},
		{"10.1.2.3:9090", true, false},
	} {
		yaml := "routes: [{name: a, path: /, upstreams: [builtin:echo]}]\n"
		cfg, err := config.Parse("t.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		if c.token {
			cfg.AdminToken = "0123456789abcdef0123456789abcdef"
		}
		logs := &syncBuffer{}
		g, err := New(cfg, zerolog.New(logs))
		if err != nil {
			t.Fatal(err)
		}
		tcp, _ := net.ResolveTCPAddr("tcp", c.addr)
		g.warnOpenAdmin(addrListener{addr: tcp})
		g.poll.Close()
		if got := strings.Contains(logs.String(), "admin listener is not on loopback"); got != c.warn {
			t.Errorf("%s token=%v: warned %v, want %v (%s)", c.addr, c.token, got, c.warn, logs.String())
		}
	}
}

// TestRegistryAwait: a lookup of a session whose handshake is under way
// waits for the handshake's end: the session once added, nothing once
// settled without one, nothing when its context ends first.
func TestRegistryAwait(t *testing.T) {
	t.Parallel()
	var r registry
	r.init()
	type result struct {
		e  sessionEntry
		ok bool
	}
	await := func(ctx context.Context, id sessionID) <-chan result {
		ch := make(chan result, 1)
		go func() {
			e, ok := r.await(ctx, id)
			ch <- result{e, ok}
		}()
		return ch
	}
	waitPending := func(id sessionID) { // until await has made its channel
		t.Helper()
		eventually(t, "a waiter on the pending session", func() bool {
			r.mu.RLock()
			defer r.mu.RUnlock()
			return r.pending[id] != nil
		})
	}

	// Unknown: at once, nothing.
	if _, ok := r.await(context.Background(), newSessionID()); ok {
		t.Fatal("await of an unknown id found a session")
	}

	// Pending, then added.
	s := relay.New(&relay.Config{})
	id := newSessionID()
	s.ID = id
	r.expect(id)
	if !r.here(id) {
		t.Error("here(pending id) = false")
	}
	got := await(context.Background(), id)
	waitPending(id)
	r.add(s, nil, nil)
	if res := <-got; !res.ok || res.e.s != s {
		t.Errorf("await of a pending id, then added = %v %v, want the session", res.e.s, res.ok)
	}
	if _, still := r.pending[id]; still {
		t.Error("add left the id pending")
	}

	// Pending, then settled without a session (a failed handshake).
	id2 := newSessionID()
	r.expect(id2)
	got = await(context.Background(), id2)
	waitPending(id2)
	r.settle(id2)
	if res := <-got; res.ok {
		t.Error("await of a pending id, then settled, found a session")
	}
	if r.here(id2) {
		t.Error("here(settled id) = true")
	}
	r.settle(id2) // twice is harmless

	// Pending, the waiter's context ends first.
	id3 := newSessionID()
	r.expect(id3)
	ctx, cancel := context.WithCancel(context.Background())
	got = await(ctx, id3)
	waitPending(id3)
	cancel()
	if res := <-got; res.ok {
		t.Error("await whose context ended found a session")
	}
	r.settle(id3)
}

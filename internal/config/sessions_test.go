package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigSessionsKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("  0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `server:
  admin_listen: "0.0.0.0:9090"
  admin_token_file: ` + tok + `
  session_id_header: x-session
defaults:
  events: {url: "http://127.0.0.1:9/ev", on: [disconnect], timeout: 3s}
routes:
  - {name: a, path: /a, upstreams: [builtin:echo]}
  - {name: b, path: /b, upstreams: [builtin:echo], events: {url: "https://h.example/x"}}
  - {name: c, path: /c, upstreams: [builtin:echo], events: off}
`
	cfg, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Server
	if cfg.AdminToken != "0123456789abcdef0123456789abcdef" || s.AdminTokenFile != tok || s.SessionIDHeader != "X-Session" {
		t.Errorf("server = %+v", s)
	}
	for _, w := range cfg.Warnings {
		if strings.Contains(w, "admin_listen") {
			t.Errorf("warned although a token is set: %s", w)
		}
	}
	want := Events{URL: "http://127.0.0.1:9/ev", Disconnect: true, Timeout: 3 * time.Second}
	if e := cfg.RouteByName("a").Settings.Events; e == nil || *e != want {
		t.Errorf("route a events = %+v", e)
	}
	want = Events{URL: "https://h.example/x", Connect: true, Disconnect: true, Timeout: DefaultEventsTimeout}
	if e := cfg.RouteByName("b").Settings.Events; e == nil || *e != want {
		t.Errorf("route b events = %+v", e)
	}
	if e := cfg.RouteByName("c").Settings.Events; e != nil {
		t.Errorf("route c events = %+v, want none", e)
	}

	// No token on a public admin listener: warned.
	cfg, err = Parse("t.yaml", []byte("server: {admin_listen: \"0.0.0.0:9090\", session_id_header: \"\"}\nroutes: [{name: a, path: /, upstreams: [builtin:echo]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.SessionIDHeader != "" {
		t.Errorf("session_id_header \"\" = %q, want off", cfg.Server.SessionIDHeader)
	}
	if !strings.Contains(strings.Join(cfg.Warnings, "\n"), "admin_token_file") {
		t.Errorf("no warning for a public admin listener without a token: %q", cfg.Warnings)
	}
}

func TestConfigSessionsErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	route := "routes: [{name: a, path: /, upstreams: [builtin:echo]}]\n"
	for _, c := range []struct{ src, want string }{
		{"server: {admin_token_file: " + empty + "}\n", "2:" /* placeholder line check below */},
		{"server: {admin_token_file: " + filepath.Join(dir, "nope") + "}\n", "admin_token_file"},
		{"server: {session_id_header: \"bad header\"}\n", "not a valid header name"},
		{"server: {session_id_header: Upgrade}\n", "cannot carry the session id"},
		{"defaults: {events: {on: [connect]}}\n", "events.url: required"},
		{"defaults: {events: {url: \"ftp://x/\"}}\n", "bad events URL"},
		{"defaults: {events: {url: \"http://x/\", on: [open]}}\n", "events.on"},
		{"defaults: {events: {url: \"http://x/\", timeout: 0s}}\n", "events.timeout"},
		{"defaults: {events: {url: \"http://x/\", retries: 3}}\n", "unknown key"},
		{"defaults: {events: \"http://x/\"}\n", "want {url:"},
	} {
		_, err := Parse("t.yaml", []byte(c.src+route))
		if err == nil {
			t.Errorf("%q: no error", c.src)
			continue
		}
		if c.want == "2:" {
			if !strings.Contains(err.Error(), "is empty") || !strings.Contains(err.Error(), "t.yaml:1:") {
				t.Errorf("%q: %v", c.src, err)
			}
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "t.yaml:1") {
			t.Errorf("%q: error %q does not name %q and line 1", c.src, err, c.want)
		}
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClusterBlock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pw := filepath.Join(dir, "redis-password")
	if err := os.WriteFile(pw, []byte("  s3cret \nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := "cluster:\n  redis: redis://10.0.0.9:6379/2\n  password_file: " + pw +
		"\n  node: gw-1.eu\n  fail: closed\n  certificates: false\n" +
		"defaults:\n  max_session_lifetime: 1h\nroutes:\n  - {name: a, upstreams: [builtin:echo]}\n" +
		"  - {name: b, path: /b, upstreams: [builtin:echo], max_session_lifetime: 0}\n"
	cfg, err := Parse("c.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Cluster
	if !c.Enabled() || c.Redis != "redis://10.0.0.9:6379/2" || c.Password != "s3cret" || c.Node != "gw-1.eu" ||
		c.Fail != FailClosed || c.Certificates {
		t.Errorf("cluster = %+v", c)
	}
	if got := cfg.Routes[0].Settings.MaxSessionLifetime; got != time.Hour {
		t.Errorf("route a inherits max_session_lifetime %v, want 1h", got)
	}
	if got := cfg.Routes[1].Settings.MaxSessionLifetime; got != 0 {
		t.Errorf("route b overrides max_session_lifetime with 0, got %v", got)
	}
}

func TestClusterDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("c.yaml", []byte("routes:\n  - {name: a, upstreams: [builtin:echo]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Cluster; c.Enabled() || c.Fail != FailOpen || !c.Certificates {
		t.Errorf("default cluster = %+v, want alone, fail open, certificates on", c)
	}
	if cfg.Routes[0].Settings.MaxSessionLifetime != 0 {
		t.Error("max_session_lifetime defaults to unlimited")
	}
	host, err := os.Hostname()
	if err != nil || checkNodeName(host) != nil {
		t.Skipf("hostname %q cannot name a node here", host)
	}
	cfg, err = Parse("c.yaml", []byte("cluster: {redis: \"unix:///run/redis.sock\"}\nroutes:\n  - {name: a, upstreams: [builtin:echo]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.Node != host {
		t.Errorf("node = %q, want the hostname %q", cfg.Cluster.Node, host)
	}
}

func TestClusterWarnings(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("c.yaml", []byte("cluster:\n  fail: closed\nroutes:\n  - {name: a, upstreams: [builtin:echo]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "c.yaml:1: cluster: cluster.redis is not set") {
		t.Errorf("warnings = %q", cfg.Warnings)
	}
	cfg, err = Parse("c.yaml", []byte("cluster:\n  redis: redis://r\n  node: n\n  certificates: true\nroutes:\n  - {name: a, upstreams: [builtin:echo]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "c.yaml:4: cluster.certificates: has no effect without tls.acme") {
		t.Errorf("warnings = %q", cfg.Warnings)
	}
}

func TestRedisURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, err string
	}{
		{"redis://127.0.0.1:6379/0", ""},
		{"rediss://user:pw@redis.internal", ""},
		{"unix:///run/valkey.sock?db=3", ""},
		{"redis://:6379", "has no host"},
		{"redis://h:0", "out of range"},
		{"redis://h:6379/zero", "database number"},
		{"redis://h:6379/-1", "database number"},
		{"unix://", "no socket path"},
		{"10.0.0.9:6379", "scheme must be"},
		{"redis://h:6379/%zz", "not a URL"},
	} {
		err := checkRedisURL(tc.in)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("checkRedisURL(%q) = %v, want %q", tc.in, err, tc.err)
		}
	}
}

func FuzzRedisURL(f *testing.F) {
	for _, s := range []string{"redis://127.0.0.1:6379/0", "rediss://u:p@h", "unix:///s?db=1", "redis://[::1]:6379", "redis://h:99999", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkRedisURL(s) != nil {
			return
		}
		// Whatever passes names a server the cluster package can dial. A
		// scheme is case-insensitive (RFC 3986 §3.1): "UNIX:" and "Redis:"
		// are accepted, here and by go-redis.
		l := strings.ToLower(s)
		if s != "" && !strings.HasPrefix(l, "redis://") && !strings.HasPrefix(l, "rediss://") && !strings.HasPrefix(l, "unix:") {
			t.Fatalf("%q accepted", s)
		}
	})
}

// TestClusterSpecBlock: the block as the documentation shows it, empty
// strings meaning "the default".
func TestClusterSpecBlock(t *testing.T) {
	t.Parallel()
	host, err := os.Hostname()
	if err != nil || checkNodeName(host) != nil {
		t.Skipf("hostname %q cannot name a node here", host)
	}
	doc := `cluster:
  redis: redis://10.0.0.9:6379/0   # "" = a single instance (the default)
  password_file: ""
  node: ""                # this instance's name; default the hostname
  fail: open
  certificates: true
routes:
  - {name: a, upstreams: [builtin:echo]}
`
	cfg, err := Parse("c.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Cluster; c.Redis != "redis://10.0.0.9:6379/0" || c.Node != host || c.Password != "" || c.Fail != FailOpen || !c.Certificates {
		t.Errorf("cluster = %+v", c)
	}
	cfg, err = Parse("c.yaml", []byte("cluster: {redis: \"\"}\nroutes:\n  - {name: a, upstreams: [builtin:echo]}\n"))
	if err != nil || cfg.Cluster.Enabled() {
		t.Errorf("redis: \"\" = %+v, %v; want a single instance", cfg, err)
	}
}

package config

// The cluster: block (README "Running several instances").

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"wsgate/internal/config/yamlwalk"

	"gopkg.in/yaml.v3"
)

var clusterKeys = []string{"redis", "password_file", "node", "fail", "certificates"}

// ClusterFail is `cluster.fail`: what handshakes get while Redis is
// unreachable.
type ClusterFail string

const (
	FailOpen   ClusterFail = "open"   // each instance limits alone, on its local limiters
	FailClosed ClusterFail = "closed" // handshakes get 503 until Redis is back
)

// ClusterConfig is the `cluster` block. Redis "" (the default) is a single
// instance: nothing is shared and the other fields are unused. Changing it
// needs a restart.
type ClusterConfig struct {
	// Redis is a redis://, rediss:// or unix:// URL of a Redis or Valkey
	// server, as written.
	Redis        string
	PasswordFile string
	// Password is the first line of PasswordFile ("" without one); it
	// overrides a password in the URL.
	Password string
	// Node names this instance in Redis; default the hostname.
	Node string
	Fail ClusterFail
	// Certificates keeps the ACME account and certificates in Redis
	// instead of tls.acme.storage (only with tls.acme). Default true.
	Certificates bool
}

// Enabled reports whether the gateway is part of a cluster.
func (c *ClusterConfig) Enabled() bool { return c.Redis != "" }

func builtinCluster() ClusterConfig {
	return ClusterConfig{Fail: FailOpen, Certificates: true}
}

func (p *parser) clusterBlock(v yamlwalk.Val, c *ClusterConfig) {
	p.Accept(v)
	fields := p.Fields(v, clusterKeys)
	if n := yamlwalk.Deref(v.N); n != nil && n.Kind != yaml.MappingNode {
		return // Fields reported it
	}
	for _, f := range fields {
		switch f.Name {
		case "redis":
			if s, ok := p.Str(f.V); ok {
				if err := checkRedisURL(s); err != nil {
					p.Errf(f.V.Line, f.V.Key, "%v", err)
					continue
				}
				c.Redis = s
			}
		case "password_file":
			if s, ok := p.Str(f.V); ok && s != "" {
				pw, err := readSecretFile(s)
				if err != nil {
					p.Errf(f.V.Line, f.V.Key, "%v", err)
					continue
				}
				c.PasswordFile, c.Password = s, pw
			}
		case "node":
			if s, ok := p.Str(f.V); ok && s != "" { // "": the hostname
				if err := checkNodeName(s); err != nil {
					p.Errf(f.V.Line, f.V.Key, "%v", err)
					continue
				}
				c.Node = s
			}
		case "fail":
			if s, ok := p.OneOf(f.V, string(FailOpen), string(FailClosed)); ok {
				c.Fail = ClusterFail(s)
			}
		case "certificates":
			if b, ok := p.Bool(f.V); ok {
				c.Certificates = b
			}
		}
	}
}

// checkCluster fills in the node name and warns about keys that have no
// effect.
func (p *parser) checkCluster(cfg *Config) {
	c := &cfg.Cluster
	line, ok := p.Lines["cluster"]
	if !ok {
		return
	}
	if !c.Enabled() {
		if _, set := p.Lines["cluster.redis"]; !set && len(p.Errs) == 0 {
			p.Warnf(line, "cluster", "cluster.redis is not set: this instance runs alone and the block is unused")
		}
		return
	}
	if c.Node == "" {
		h, err := os.Hostname()
		if err != nil || checkNodeName(h) != nil {
			p.Errf(line, "cluster.node", "required: the hostname (%q) cannot name this instance; set cluster.node", h)
		}
		c.Node = h
	}
	if l, set := p.Lines["cluster.certificates"]; set && c.Certificates && cfg.TLS.ACME == nil {
		p.Warnf(l, "cluster.certificates", "has no effect without tls.acme")
	}
}

// checkRedisURL accepts what go-redis's ParseURL accepts, and says what
// is wrong in the config's terms: redis:// or rediss://host[:port][/db],
// or unix:///path/to/socket[?db=N].
func checkRedisURL(s string) error {
	if s == "" {
		return nil
	}
	if !strings.Contains(s, ":/") {
		return fmt.Errorf("%q: the scheme must be redis, rediss or unix, as in redis://host:6379/0", yamlwalk.Clip(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", yamlwalk.Clip(s), unwrapURLError(err))
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Hostname() == "" {
			return fmt.Errorf("%q has no host: want redis://host:6379/0", yamlwalk.Clip(s))
		}
		if port := u.Port(); port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("%q: port %q is out of range", yamlwalk.Clip(s), yamlwalk.Clip(port))
			}
		}
		if db := strings.TrimPrefix(u.Path, "/"); db != "" {
			if n, err := strconv.Atoi(db); err != nil || n < 0 {
				return fmt.Errorf("%q: the path must be a database number, like /0", yamlwalk.Clip(s))
			}
		}
	case "unix":
		if u.Path == "" {
			return fmt.Errorf("%q has no socket path: want unix:///run/redis.sock", yamlwalk.Clip(s))
		}
	default:
		return fmt.Errorf("%q: the scheme must be redis, rediss or unix", yamlwalk.Clip(s))
	}
	return nil
}

// checkNodeName: a node name goes into Redis keys and logs.
func checkNodeName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("a node name must be 1 to 64 characters, got %d", len(s))
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%q: a node name may hold letters, digits, '-', '_' and '.' only", yamlwalk.Clip(s))
		}
	}
	return nil
}

// readSecretFile reads a secret kept in a file: its first line, without
// surrounding space.
func readSecretFile(name string) (string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %v", name, unwrapPathError(err))
	}
	if len(b) > 4096 {
		return "", fmt.Errorf("%s is larger than 4 KiB: not a password", name)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("%s is empty", name)
	}
	return line, nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

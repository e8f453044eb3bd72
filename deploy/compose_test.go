package deploy_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"wsgate/internal/config"
)

// TestComposeCluster: the docker-compose example runs several gateways on
// one Valkey behind an L4 balancer that sends the PROXY protocol, and the
// gateways' config is valid and says so.
func TestComposeCluster(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Image    string   `yaml:"image"`
			Hostname string   `yaml:"hostname"`
			Command  []string `yaml:"command"`
			Volumes  []string `yaml:"volumes"`
			Stop     string   `yaml:"stop_grace_period"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(read(t, "compose/docker-compose.yaml")), &compose); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load("compose/wsgate.yaml")
	if err != nil {
		t.Fatalf("compose/wsgate.yaml: %v", err)
	}
	if !cfg.Cluster.Enabled() || !cfg.Server.ProxyProtocol {
		t.Fatal("the instances' config has no cluster.redis or no proxy_protocol")
	}
	redisHost := strings.Split(strings.TrimPrefix(cfg.Cluster.Redis, "redis://"), ":")[0]
	if _, ok := compose.Services[redisHost]; !ok {
		t.Errorf("cluster.redis names %q, which is no service", redisHost)
	}
	haproxy := read(t, "compose/haproxy.cfg")
	gateways := 0
	hosts := map[string]bool{}
	for name, s := range compose.Services {
		if !strings.HasPrefix(name, "wsgate-") {
			continue
		}
		gateways++
		hosts[s.Hostname] = true
		if len(s.Command) < 3 || s.Command[len(s.Command)-1] != "/etc/wsgate/cluster.yaml" ||
			len(s.Volumes) == 0 || !strings.HasPrefix(s.Volumes[0], "./wsgate.yaml:/etc/wsgate/cluster.yaml") {
			t.Errorf("%s does not run compose/wsgate.yaml: %v %v", name, s.Command, s.Volumes)
		}
		if !regexp.MustCompile(`server ` + name + ` ` + name + `:8080 send-proxy-v2 check port 9090`).MatchString(haproxy) {
			t.Errorf("haproxy.cfg does not balance to %s with the PROXY protocol", name)
		}
		if s.Stop == "" {
			t.Errorf("%s has no stop_grace_period above shutdown_grace", name)
		}
	}
	if gateways < 2 || len(hosts) != gateways {
		t.Errorf("%d gateways with %d distinct hostnames (cluster.node defaults to the hostname)", gateways, len(hosts))
	}
	if !strings.Contains(haproxy, "mode tcp") {
		t.Error("haproxy.cfg is not an L4 balancer")
	}
	if _, err := os.Stat("../Dockerfile"); err != nil {
		t.Error(err)
	}
}

// Package deploy_test checks the deployment files against each other and
// against the gateway: the Dockerfile's build line is the one CI runs, the
// systemd unit verifies, and the Kubernetes manifests parse with the expected
// kinds, probes and timeouts.
package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"wsgate/internal/config"

	"gopkg.in/yaml.v3"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// buildLine is the Dockerfile's go build command line.
func buildLine(t *testing.T) string {
	t.Helper()
	for _, l := range strings.Split(read(t, "../Dockerfile"), "\n") {
		if cmd, ok := strings.CutPrefix(l, "RUN "); ok && strings.Contains(cmd, "go build") {
			return strings.TrimSpace(cmd)
		}
	}
	t.Fatal("Dockerfile has no RUN ... go build line")
	return ""
}

func TestDockerfileBuildLineIsCIs(t *testing.T) {
	line := buildLine(t)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "./cmd/wsgate"} {
		if !strings.Contains(line, want) {
			t.Errorf("build line %q lacks %q", line, want)
		}
	}
	ci := read(t, "../.ci/run")
	found := false
	for _, l := range strings.Split(ci, "\n") {
		if strings.TrimSpace(l) == line {
			found = true
		}
	}
	if !found {
		t.Fatalf(".ci/run does not run the Dockerfile's build line verbatim:\n%s", line)
	}
}

func TestDockerfile(t *testing.T) {
	df := read(t, "../Dockerfile")
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1)); n < 2 {
		t.Errorf("want a multi-stage build, got %d FROM lines", n)
	}
	for _, want := range []string{
		"USER nonroot", "STOPSIGNAL SIGTERM", "VOLUME /var/lib/wsgate",
		"/etc/wsgate/config.yaml", "distroless/static", // CA certificates, no shell
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// EXPOSE the ports of the default config.
	cfg, err := config.Load("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	expose := regexp.MustCompile(`(?m)^EXPOSE (.*)$`).FindStringSubmatch(df)
	if expose == nil {
		t.Fatal("no EXPOSE")
	}
	for _, addr := range []string{cfg.Server.Listen, cfg.Server.AdminListen, ":8443"} {
		port := addr[strings.LastIndex(addr, ":")+1:]
		if !strings.Contains(" "+expose[1]+" ", " "+port+" ") {
			t.Errorf("EXPOSE %s lacks port %s (%s)", expose[1], port, addr)
		}
	}
}

// A binary built with the Dockerfile's line reports the stamped version.
func TestBuildLineStampsVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	line := strings.ReplaceAll(buildLine(t), "${VERSION}", "v9.9.9-test")
	line = strings.ReplaceAll(line, "./bin/wsgate", filepath.Join(dir, "wsgate"))
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	out, err := exec.Command(filepath.Join(dir, "wsgate"), "version").Output()
	if err != nil || !bytes.Contains(out, []byte("v9.9.9-test")) {
		t.Fatalf("version: %q, %v", out, err)
	}
}

func unitValue(unit, key string) string {
	m := regexp.MustCompile(`(?m)^` + key + `=(.*)$`).FindStringSubmatch(unit)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestSystemdUnit(t *testing.T) {
	unit := read(t, "systemd/wsgate.service")
	if !strings.Contains(unitValue(unit, "ExecReload"), "-HUP") {
		t.Error("ExecReload must send SIGHUP")
	}
	stop, err := strconv.Atoi(unitValue(unit, "TimeoutStopSec"))
	if err != nil {
		t.Fatal("TimeoutStopSec must be whole seconds:", err)
	}
	cfg, err := config.Load("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(stop)*time.Second <= cfg.Server.ShutdownGrace+2*time.Second {
		t.Errorf("TimeoutStopSec %ds is not above shutdown_grace %v + 2s", stop, cfg.Server.ShutdownGrace)
	}
	if n, err := strconv.Atoi(unitValue(unit, "LimitNOFILE")); err != nil || n < 2*1000+1024 {
		t.Errorf("LimitNOFILE %q too small", unitValue(unit, "LimitNOFILE"))
	}
	for _, k := range []string{"NoNewPrivileges", "ProtectSystem", "PrivateTmp", "User"} {
		if unitValue(unit, k) == "" {
			t.Errorf("unit lacks %s", k)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze missing in CI")
		}
		t.Skip("systemd-analyze not installed")
	}
	// verify checks that ExecStart's binary exists: point it at a real one.
	dir := t.TempDir()
	bin := filepath.Join(dir, "wsgate")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/wsgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	local := filepath.Join(dir, "wsgate.service")
	if err := os.WriteFile(local, []byte(strings.ReplaceAll(unit, "/usr/local/bin/wsgate", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", local).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestKubernetesManifests(t *testing.T) {
	dec := yaml.NewDecoder(strings.NewReader(read(t, "kubernetes/wsgate.yaml")))
	docs := map[string]map[string]any{}
	for {
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatal(err)
		}
		if d == nil {
			continue
		}
		kind, _ := d["kind"].(string)
		docs[kind] = d
	}
	for _, k := range []string{"ConfigMap", "Deployment", "Service", "PersistentVolumeClaim"} {
		if docs[k] == nil {
			t.Fatalf("no %s", k)
		}
	}
	// The ConfigMap's config is a valid wsgate config.
	data := docs["ConfigMap"]["data"].(map[string]any)["config.yaml"].(string)
	cfg, err := config.Parse("configmap:config.yaml", []byte(data))
	if err != nil {
		t.Fatalf("ConfigMap config: %v", err)
	}
	spec := get(t, docs["Deployment"], "spec", "template", "spec").(map[string]any)
	grace := spec["terminationGracePeriodSeconds"].(int)
	if time.Duration(grace)*time.Second <= cfg.Server.ShutdownGrace+2*time.Second {
		t.Errorf("terminationGracePeriodSeconds %d not above shutdown_grace %v + 2s", grace, cfg.Server.ShutdownGrace)
	}
	c := spec["containers"].([]any)[0].(map[string]any)
	if p := get(t, c, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("readiness probe path %v", p)
	}
	if p := get(t, c, "livenessProbe", "httpGet", "path"); p != "/healthz" {
		t.Errorf("liveness probe path %v", p)
	}
	if get(t, c, "lifecycle", "preStop") == nil {
		t.Error("no preStop")
	}
	claim := false
	for _, v := range spec["volumes"].([]any) {
		if v.(map[string]any)["persistentVolumeClaim"] != nil {
			claim = true
		}
	}
	if !claim {
		t.Error("certificate storage is not on a PersistentVolumeClaim")
	}
}

func get(t *testing.T, m map[string]any, path ...string) any {
	t.Helper()
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%v: not a map at %q", path, p)
		}
		cur = mm[p]
	}
	return cur
}

package proxy

// Node programs in tests (test/node): node itself and the npm packages
// .ci/run installs with npm ci.

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// nodeDir is test/node, with its packages installed; missing, the test
// fails under CI and is skipped elsewhere.
func nodeDir(t *testing.T, packages ...string) (node, dir string) {
	t.Helper()
	dir = filepath.Join("..", "test", "node")
	missing := func(what string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (CI installs it: cd test/node && npm ci)", what)
		}
		t.Skipf("%s is missing: install node and run `cd test/node && npm ci`", what)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node")
	}
	for _, p := range packages {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", p, "package.json")); err != nil {
			missing("test/node/node_modules/" + p)
		}
	}
	return node, dir
}

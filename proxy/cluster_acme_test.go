package proxy

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"wsgate/internal/certs"
	"wsgate/internal/testutil/redistest"
)

// TestClusterACME: two instances on one Redis manage the same host
// against Pebble. One certificate is issued (one order), both serve it;
// neither uses its tls.acme.storage folder. Pebble validates on the first
// instance's ports only, so when the second one holds the lock, the first
// answers the challenge from the data in Redis.
func TestClusterACME(t *testing.T) {
	srv := redistest.Start(t)
	ls1, ls2 := acmeListeners(t), acmeListeners(t)
	pb := startPebble(t, ls1.Plain.Addr().(*net.TCPAddr).Port, ls1.TLS.Addr().(*net.TCPAddr).Port)
	dirs := []string{t.TempDir(), t.TempDir()}
	yaml := func(node, dir string) string {
		return acmeYAML(pb.Dir, pb.CARoot, dir, "") +
			fmt.Sprintf("cluster:\n  redis: %q\n  node: %s\n  certificates: true\n", srv.URL(), node)
	}
	gw1 := startACMEGateway(t, yaml("gw1", dirs[0]), ls1, certs.Challenges{})
	gw2 := startACMEGateway(t, yaml("gw2", dirs[1]), ls2, certs.Challenges{})
	roots := pb.roots(t)
	leaf1 := gw1.waitForCertificate(t, roots)
	leaf2 := gw2.waitForCertificate(t, roots)
	if leaf1.SerialNumber.Cmp(leaf2.SerialNumber) != 0 {
		t.Errorf("the instances serve different certificates (serials %v and %v)", leaf1.SerialNumber, leaf2.SerialNumber)
	}
	gw1.echo(t, roots)
	gw2.echo(t, roots)
	if n := pb.orders(); n != 1 {
		t.Errorf("pebble saw %d orders, want 1", n)
	}
	for _, d := range dirs {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Errorf("tls.acme.storage %s was used: %v", filepath.Base(d), entries)
		}
	}
	if n, err := srv.Do("ZCARD", "wsgate:certs:index"); err != nil || n == ":0" {
		t.Errorf("no certificate data in Redis: %q, %v", n, err)
	}
}

package proxy

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"wsgate/internal/certs"
	"wsgate/internal/cluster"
	"wsgate/internal/testutil/redistest"
)

// TestClusterACMELockKilled: a wsgate process takes the lock to obtain
// gw.test's certificate from a CA that does not answer, and keeps it
// while it retries; another instance waits. Killed with SIGKILL, the
// process cannot unlock: its lease runs out within cluster.LockTTL and
// the other instance obtains the certificate.
func TestClusterACMELockKilled(t *testing.T) {
	srv := redistest.Start(t)
	ls := acmeListeners(t)
	pb := startPebble(t, ls.Plain.Addr().(*net.TCPAddr).Port, ls.TLS.Addr().(*net.TCPAddr).Port)

	deadCA := fmt.Sprintf("https://127.0.0.1:%d/dir", freePort(t))
	cfgText := acmeYAML(deadCA, pb.CARoot, t.TempDir(), "") +
		fmt.Sprintf("cluster:\n  redis: %q\n  node: holder\n", srv.URL())
	for _, l := range []string{`":8080"`, `":8443"`, `"127.0.0.1:9090"`} {
		cfgText = strings.Replace(cfgText, l, strconv.Quote(freeAddr(t)), 1)
	}
	cmd, logs := startWsgateProcess(t, cfgText)
	lock := "wsgate:locks:issue_cert_gw.test"
	for deadline := time.Now().Add(acmeWait); ; time.Sleep(50 * time.Millisecond) {
		if n, _ := srv.Do("EXISTS", lock); n == ":1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process took no lock within %v\n%s", acmeWait, logs.String())
		}
	}

	gw := startACMEGateway(t, acmeYAML(pb.Dir, pb.CARoot, t.TempDir(), "")+
		fmt.Sprintf("cluster:\n  redis: %q\n  node: waiter\n", srv.URL()), ls, certs.Challenges{})
	roots := pb.roots(t)
	// The waiter waits for the lock (it renews itself while the holder lives).
	time.Sleep(2 * time.Second)
	if _, err := gw.handshake("gw.test", roots); err == nil {
		t.Fatalf("the waiter has a certificate while the holder keeps the lock\n%s", logs.String())
	}
	if pb.orders() != 0 {
		t.Fatalf("pebble got %d orders while the holder keeps the lock", pb.orders())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	gw.waitForCertificate(t, roots)
	took := time.Since(killed)
	t.Logf("certificate obtained %v after the holder was killed", took)
	if took > cluster.LockTTL+acmeWait {
		t.Errorf("took %v", took)
	}
	if pb.orders() != 1 {
		t.Errorf("pebble saw %d orders, want 1", pb.orders())
	}
}

package proxy

// Automatic HTTPS against a real ACME server (docs/operations.md "Automatic HTTPS (ACME)",
// /readyz under "Observability"): Pebble, Let's Encrypt's test CA, runs as
// a child process on 127.0.0.1 and validates the gateway's challenges on
// the gateway's own listeners; pebble-challtestsrv is its DNS server and
// answers 127.0.0.1 for every name. Both come with Debian's `pebble`
// package. Without them these tests skip, except in CI, where they fail.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"wsgate/internal/certs"
	"wsgate/internal/config"

	"github.com/caddyserver/certmagic"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
)

// acmeWait bounds every wait for the CA: issuance takes about a second
// with PEBBLE_VA_NOSLEEP.
const acmeWait = 30 * time.Second

// ---- Pebble ----

// pebbleBinaries returns the paths of pebble and pebble-challtestsrv.
func pebbleBinaries(t *testing.T) (pebble, challtestsrv string) {
	t.Helper()
	var missing []string
	paths := map[string]string{}
	for _, name := range []string{"pebble", "pebble-challtestsrv"} {
		p, err := exec.LookPath(name)
		if err != nil {
			missing = append(missing, name)
		}
		paths[name] = p
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s not installed (Debian package `pebble`)", strings.Join(missing, ", "))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return paths["pebble"], paths["pebble-challtestsrv"]
}

// freePort returns a 127.0.0.1 port that was free a moment ago, for
// programs that cannot report the port they bound.
func freePort(t *testing.T) int {
	t.Helper()
	freePorts.Lock()
	defer freePorts.Unlock()
	if freePorts.given == nil {
		freePorts.given = map[int]bool{}
	}
	// The kernel may hand the same port back right after it was closed:
	// never give one out twice in a process (Pebble once got the same
	// port for its ACME and management listeners, and failed to start).
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !freePorts.given[port] {
			freePorts.given[port] = true
			return port
		}
	}
	t.Fatal("no free port not given out before")
	return 0
}

// freePorts are the ports freePort gave out.
var freePorts struct {
	sync.Mutex
	given map[int]bool
}

// pebble is a running Pebble with its DNS server.
type pebble struct {
	Dir    string      // https URL of the ACME directory
	CARoot string      // PEM file of the CA behind Pebble's own HTTPS certificate
	Log    *syncBuffer // Pebble's output
	mgmt   string      // host:port of the management interface
	client *http.Client
	procs  []*exec.Cmd
}

// startPebble runs Pebble validating HTTP-01 on httpPort and TLS-ALPN-01
// on tlsPort of 127.0.0.1, until the test ends.
func startPebble(t *testing.T, httpPort, tlsPort int) *pebble {
	t.Helper()
	pebbleBin, challBin := pebbleBinaries(t)
	// Debian's package ships no certificate for Pebble's HTTPS: make one.
	// Its CA is what the gateway's tls.acme.ca_root trusts.
	ca := newTLSCA(t, "pebble https CA")
	leaf := ca.leaf(t, "127.0.0.1", "localhost")
	p := &pebble{CARoot: ca.file, Log: &syncBuffer{}}
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	t.Cleanup(p.stop)

	dnsPort := freePort(t)
	p.run(t, challBin,
		"-dns01", "127.0.0.1:"+strconv.Itoa(dnsPort),
		"-management", "127.0.0.1:"+strconv.Itoa(freePort(t)),
		"-http01", "", "-https01", "", "-tlsalpn01", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")

	acmePort, mgmtPort := freePort(t), freePort(t)
	p.Dir = fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort)
	p.mgmt = fmt.Sprintf("127.0.0.1:%d", mgmtPort)
	conf, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress":        p.mgmt,
		"certificate":                    leaf.certFile,
		"privateKey":                     leaf.keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}})
	confFile := filepath.Join(t.TempDir(), "pebble-config.json")
	if err := os.WriteFile(confFile, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	p.run(t, pebbleBin, "-config", confFile, "-dnsserver", "127.0.0.1:"+strconv.Itoa(dnsPort))

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := p.client.Get(p.Dir)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not answer %s: %v\n%s", p.Dir, err, p.Log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *pebble) run(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	// No artificial validation delays, no rejected nonces, and a fresh
	// authorization for every order, so that every order is validated.
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = p.Log, p.Log
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	p.procs = append(p.procs, cmd)
}

// stop kills Pebble and its DNS server (only the processes started here).
func (p *pebble) stop() {
	for _, cmd := range p.procs {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	p.procs = nil
}

// roots is the pool of Pebble's issuing root, fetched from its management
// interface (it is generated anew at every start).
func (p *pebble) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	pem, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if resp.StatusCode != http.StatusOK || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("pebble /roots/0: status %d, %q", resp.StatusCode, pem)
	}
	return pool
}

// orders counts the orders Pebble has been asked for, from its log.
func (p *pebble) orders() int {
	return len(p.Log.Lines("Added order"))
}

// ---- the gateway ----

// acmeGateway is a gateway with tls.acme serving plain, TLS and admin
// listeners on 127.0.0.1.
type acmeGateway struct {
	*Gateway
	TLSAddr, AdminAddr string
	PlainPort, TLSPort int
	Logs               *syncBuffer
	stop               func()
}

// acmeListeners opens the gateway's three listeners first: Pebble must be
// told the plain and TLS ports before it starts.
func acmeListeners(t *testing.T) *Listeners {
	t.Helper()
	ls := &Listeners{}
	for _, ln := range []*net.Listener{&ls.Plain, &ls.TLS, &ls.Admin} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			ls.Close()
			t.Fatal(err)
		}
		*ln = l
	}
	return ls
}

// acmeYAML is a config managing gw.test (route /echo to builtin:echo)
// through the CA at dir, trusting caRoot, with storage in storage.
func acmeYAML(dir, caRoot, storage string, extraRoutes string) string {
	return fmt.Sprintf(`server:
  listen: ":8080"
  tls_listen: ":8443"
  admin_listen: "127.0.0.1:9090"
  shutdown_grace: 3s
  close_spread: 0s
tls:
  acme:
    email: ops@example.com
    ca: %q
    ca_root: %q
    agree_terms: true
    storage: %q
routes:
  - name: echo
    host: gw.test
    path: /echo
    upstreams: [builtin:echo]
%s`, dir, caRoot, storage, extraRoutes)
}

func startACMEGateway(t *testing.T, yamlText string, ls *Listeners, ch certs.Challenges) *acmeGateway {
	t.Helper()
	cfg, err := config.Parse("acme-test.yaml", []byte(yamlText))
	if err != nil {
		ls.Close()
		t.Fatalf("config: %v\n%s", err, yamlText)
	}
	logs := &syncBuffer{}
	g, err := New(cfg, zerolog.New(logs))
	if err != nil {
		ls.Close()
		t.Fatal(err)
	}
	g.tls.challenges = ch
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, ls) }()
	gw := &acmeGateway{Gateway: g, TLSAddr: ls.TLS.Addr().String(), AdminAddr: ls.Admin.Addr().String(),
		PlainPort: ls.Plain.Addr().(*net.TCPAddr).Port, TLSPort: ls.TLS.Addr().(*net.TCPAddr).Port, Logs: logs}
	stopped := false
	gw.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("gateway did not stop within 10s")
		}
		ls.Close()
	}
	t.Cleanup(func() {
		gw.stop()
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	return gw
}

// handshake opens a TLS connection to the TLS listener for serverName,
// trusting roots, and returns the leaf it got.
func (gw *acmeGateway) handshake(serverName string, roots *x509.CertPool, protos ...string) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: tlsIO}, "tcp", gw.TLSAddr,
		&tls.Config{ServerName: serverName, RootCAs: roots, NextProtos: protos})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// waitForCertificate waits until gw.test is served with a certificate
// that chains to roots.
func (gw *acmeGateway) waitForCertificate(t *testing.T, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(acmeWait)
	for {
		leaf, err := gw.handshake("gw.test", roots)
		if err == nil {
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for gw.test within %s: %v", acmeWait, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// echo completes a wss:// echo through the gateway as gw.test, trusting
// only roots.
func (gw *acmeGateway) echo(t *testing.T, roots *x509.CertPool) {
	t.Helper()
	d := websocket.Dialer{
		TLSClientConfig:  &tls.Config{RootCAs: roots, ServerName: "gw.test"},
		HandshakeTimeout: tlsIO,
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, gw.TLSAddr)
		},
	}
	c, resp, err := d.Dial(fmt.Sprintf("wss://gw.test:%d/echo", gw.TLSPort), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("wss://gw.test/echo: %v (status %d)", err, status)
	}
	tlsEchoRoundTrip(t, c)
}

// readyz returns the admin listener's /readyz status and body.
func (gw *acmeGateway) readyz(t *testing.T) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: tlsIO}
	resp, err := c.Get("http://" + gw.AdminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func waitForReadyz(t *testing.T, gw *acmeGateway, want int, contains string) string {
	t.Helper()
	deadline := time.Now().Add(acmeWait)
	for {
		status, body := gw.readyz(t)
		if status == want && strings.Contains(body, contains) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: got %d %q, want %d with %q", status, body, want, contains)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- tests ----

// Each challenge type alone: Pebble validates it on the gateway's own
// listener, and a client that trusts only Pebble's root completes a wss://
// echo through the certificate certmagic obtained.
func TestACMEHTTP01(t *testing.T) {
	t.Parallel()
	testACMEChallenge(t, certs.Challenges{NoTLSALPN01: true}, "http-01")
}

func TestACMETLSALPN01(t *testing.T) {
	t.Parallel()
	testACMEChallenge(t, certs.Challenges{NoHTTP01: true}, "tls-alpn-01")
}

func testACMEChallenge(t *testing.T, ch certs.Challenges, challenge string) {
	ls := acmeListeners(t)
	pb := startPebble(t, ls.Plain.Addr().(*net.TCPAddr).Port, ls.TLS.Addr().(*net.TCPAddr).Port)
	gw := startACMEGateway(t, acmeYAML(pb.Dir, pb.CARoot, t.TempDir(), ""), ls, ch)
	roots := pb.roots(t)

	// Not ready is never the answer for a host still waiting for the CA.
	if status, body := gw.readyz(t); status != http.StatusOK || !strings.Contains(body, "acme gw.test: ") {
		t.Errorf("/readyz while obtaining: %d %q, want 200 listing gw.test", status, body)
	}
	// (/readyz answered: Serve has set certmagic up.) Its solvers point at
	// the gateway's own sockets, find them taken and never listen.
	if iss := gw.tls.acme.Load().Issuer(); iss.ListenHost != "127.0.0.1" || iss.AltHTTPPort != gw.PlainPort || iss.AltTLSALPNPort != gw.TLSPort {
		t.Errorf("solver address %q, ports %d/%d; want 127.0.0.1, %d/%d", iss.ListenHost, iss.AltHTTPPort, iss.AltTLSALPNPort, gw.PlainPort, gw.TLSPort)
	}
	leaf := gw.waitForCertificate(t, roots)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "gw.test" {
		t.Errorf("certificate names %v, want [gw.test]", leaf.DNSNames)
	}
	gw.echo(t, roots)
	waitForReadyz(t, gw, http.StatusOK, "acme gw.test: certificate loaded")

	// certmagic served the key authorization for this challenge type
	// (and not the other): Pebble really validated it.
	if n := len(gw.Logs.Lines(`"served key authentication`, `"challenge":"`+challenge+`"`)); n == 0 {
		t.Errorf("no %s key authorization served", challenge)
	}
	other := map[string]string{"http-01": "tls-alpn-01", "tls-alpn-01": "http-01"}[challenge]
	if n := len(gw.Logs.Lines(`"challenge":"` + other + `"`)); n != 0 {
		t.Errorf("%s was used though disabled", other)
	}
	for _, ev := range []string{"acme_obtaining", "acme_obtained"} {
		if len(gw.Logs.Lines(`"level":"info"`, `"event":"`+ev+`"`, `"host":"gw.test"`)) != 1 {
			t.Errorf("want one info line with event %s for gw.test", ev)
		}
	}
	if pb.orders() != 1 {
		t.Errorf("pebble saw %d orders, want 1", pb.orders())
	}
	if len(pb.Log.Lines("set VALID by completed challenge")) != 1 {
		t.Errorf("pebble did not validate exactly one challenge")
	}
}

// A restarted gateway on the same storage serves the stored certificate
// while the CA is down: no request, /readyz 200, wss:// works.
func TestACMERestartWithoutCA(t *testing.T) {
	t.Parallel()
	storage := t.TempDir()
	ls := acmeListeners(t)
	pb := startPebble(t, ls.Plain.Addr().(*net.TCPAddr).Port, ls.TLS.Addr().(*net.TCPAddr).Port)
	yaml := acmeYAML(pb.Dir, pb.CARoot, storage, "")
	gw := startACMEGateway(t, yaml, ls, certs.Challenges{})
	roots := pb.roots(t)
	first := gw.waitForCertificate(t, roots)
	gw.stop()
	pb.stop()

	gw2 := startACMEGateway(t, yaml, acmeListeners(t), certs.Challenges{})
	waitForReadyz(t, gw2, http.StatusOK, "acme gw.test: certificate loaded")
	leaf, err := gw2.handshake("gw.test", roots)
	if err != nil {
		t.Fatalf("handshake after restart: %v", err)
	}
	if !leaf.Equal(first) {
		t.Errorf("restarted gateway serves serial %v, want the stored %v", leaf.SerialNumber, first.SerialNumber)
	}
	gw2.echo(t, roots)
	if n := len(gw2.Logs.Lines(`"event":"acme_obtaining"`)); n != 0 {
		t.Errorf("restarted gateway asked the CA for a certificate %d times", n)
	}
}

// No certificate is ever requested for a name that is not configured:
// handshakes for unknown names, a wildcard route's names and a TLS-ALPN
// challenge hello for an unknown name reach neither certmagic's issuance
// nor Pebble.
func TestACMEUnknownSNI(t *testing.T) {
	t.Parallel()
	ls := acmeListeners(t)
	pb := startPebble(t, ls.Plain.Addr().(*net.TCPAddr).Port, ls.TLS.Addr().(*net.TCPAddr).Port)
	// A wildcard route needs a static certificate (config rule); its
	// names are served from it, never from ACME.
	ca := newTLSCA(t, "static CA")
	wild := ca.leaf(t, "*.w.test")
	yaml := acmeYAML(pb.Dir, pb.CARoot, t.TempDir(), `  - name: wild
    host: "*.w.test"
    path: /echo
    upstreams: [builtin:echo]
`)
	yaml = strings.Replace(yaml, "routes:\n", fmt.Sprintf("  certificates:\n    - {cert: %q, key: %q}\nroutes:\n", wild.certFile, wild.keyFile), 1)
	gw := startACMEGateway(t, yaml, ls, certs.Challenges{})
	roots := pb.roots(t)
	gw.waitForCertificate(t, roots)
	before := pb.orders()
	if before != 1 {
		t.Fatalf("pebble saw %d orders for gw.test, want 1", before)
	}

	for _, name := range []string{"unknown.test", "sub.gw.test", "gw.test.evil.test"} {
		if _, err := gw.handshake(name, nil); err == nil {
			t.Errorf("handshake for unconfigured %s succeeded", name)
		}
		if _, err := gw.handshake(name, nil, certs.ALPNProto); err == nil {
			t.Errorf("acme-tls/1 handshake for unconfigured %s succeeded", name)
		}
	}
	if leaf, err := gw.handshake("a.w.test", ca.pool); err != nil || !leaf.Equal(wild.cert) {
		t.Errorf("a.w.test: want the static wildcard certificate, got err %v", err)
	}
	// Give a wrongly started request the time to reach Pebble.
	time.Sleep(time.Second)
	if after := pb.orders(); after != before {
		t.Errorf("pebble saw %d new orders after handshakes for unconfigured names", after-before)
	}
	if n := len(gw.Logs.Lines(`"event":"acme_obtaining"`)); n != 1 {
		t.Errorf("%d acme_obtaining events, want 1 (gw.test)", n)
	}
	if n := len(gw.Logs.Lines(`"event":"acme_obtaining"`, `"host":"gw.test"`)); n != 1 {
		t.Errorf("the one acme_obtaining event is not for gw.test")
	}
}

// /readyz with ACME and no CA at all: a host waiting for its first
// certificate is listed with the CA's error but readiness holds; a
// certificate in storage must be loaded before ready; draining is 503.
func TestReadyzACME(t *testing.T) {
	t.Parallel()
	// A CA that refuses connections: every request fails at once.
	dead := fmt.Sprintf("https://127.0.0.1:%d/dir", freePort(t))
	ca := newTLSCA(t, "unused CA root")
	gw := startACMEGateway(t, acmeYAML(dead, ca.file, t.TempDir(), ""), acmeListeners(t), certs.Challenges{})
	body := waitForReadyz(t, gw, http.StatusOK, "acme gw.test: waiting for its first certificate (last error: ")
	if !strings.HasPrefix(body, "ready\n") {
		t.Errorf("/readyz body %q, want it to start with ready", body)
	}
	if len(gw.Logs.Lines(`"level":"warn"`, `"event":"acme_failed"`, `"host":"gw.test"`, `"error":"`)) == 0 {
		t.Errorf("no warn line with the CA's error for gw.test")
	}
	gw.draining.Store(true)
	if status, _ := gw.readyz(t); status != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %d, want 503", status)
	}
	gw.draining.Store(false)

	// A certificate in storage that is not loaded yet holds readiness.
	m := gw.tls.acme.Load()
	leaf := ca.leaf(t, "stored.test")
	certPEM, _ := os.ReadFile(leaf.certFile)
	keyPEM, _ := os.ReadFile(leaf.keyFile)
	key := m.Issuer().IssuerKey()
	ctx := context.Background()
	if err := m.Magic().Storage.Store(ctx, certmagic.StorageKeys.SiteCert(key, "stored.test"), certPEM); err != nil {
		t.Fatal(err)
	}
	if err := m.Magic().Storage.Store(ctx, certmagic.StorageKeys.SitePrivateKey(key, "stored.test"), keyPEM); err != nil {
		t.Fatal(err)
	}
	if err := m.Magic().Storage.Store(ctx, certmagic.StorageKeys.SiteMeta(key, "stored.test"), []byte(`{"sans":["stored.test"]}`)); err != nil {
		t.Fatal(err)
	}
	m.Track("stored.test")
	if status, body := gw.readyz(t); status != http.StatusServiceUnavailable || !strings.Contains(body, "acme stored.test: loading the certificate from storage") {
		t.Errorf("/readyz with a stored certificate not loaded: %d %q, want 503", status, body)
	}
	if _, err := m.Magic().CacheManagedCertificate(ctx, "stored.test"); err != nil {
		t.Fatal(err)
	}
	waitForReadyz(t, gw, http.StatusOK, "acme stored.test: certificate loaded")
}

// A reload moves ACME to the new set of route hosts: a new host is
// requested, a removed one is dropped, a host a new static certificate
// covers leaves ACME.
func TestACMEReloadHosts(t *testing.T) {
	t.Parallel()
	dead := fmt.Sprintf("https://127.0.0.1:%d/dir", freePort(t))
	ca := newTLSCA(t, "static CA")
	storage := t.TempDir()
	yaml := acmeYAML(dead, ca.file, storage, "  - {name: b, host: b.test, path: /echo, upstreams: [builtin:echo]}\n")
	gw := startACMEGateway(t, yaml, acmeListeners(t), certs.Challenges{})
	waitForReadyz(t, gw, http.StatusOK, "acme b.test: waiting for its first certificate (last error: ")

	leaf := ca.leaf(t, "b.test")
	yaml2 := strings.Replace(acmeYAML(dead, ca.file, storage, "  - {name: b, host: b.test, path: /echo, upstreams: [builtin:echo]}\n  - {name: c, host: c.test, path: /echo, upstreams: [builtin:echo]}\n"),
		"  - name: echo\n    host: gw.test\n", "  - name: echo\n    host: new.test\n", 1)
	yaml2 = strings.Replace(yaml2, "routes:\n", fmt.Sprintf("  certificates:\n    - {cert: %q, key: %q}\nroutes:\n", leaf.certFile, leaf.keyFile), 1)
	cfg, err := config.Parse("acme-reload.yaml", []byte(yaml2))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	gw.reloadACME(cfg)
	body := waitForReadyz(t, gw, http.StatusOK, "acme new.test: waiting for its first certificate (last error: ")
	if !strings.Contains(body, "acme c.test: ") || strings.Contains(body, "gw.test") || strings.Contains(body, "b.test") {
		t.Errorf("/readyz after reload: %q, want new.test and c.test only", body)
	}
	if m := gw.tls.acme.Load(); m.Manages("gw.test") || m.Manages("b.test") || !m.Manages("c.test") {
		t.Errorf("managed names after reload: gw.test %v, b.test %v, c.test %v", m.Manages("gw.test"), m.Manages("b.test"), m.Manages("c.test"))
	}
	if got, err := gw.handshake("b.test", ca.pool); err != nil || !got.Equal(leaf.cert) {
		t.Errorf("b.test after reload: want the static certificate, got err %v", err)
	}
}

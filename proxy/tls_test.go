package proxy

// End-to-end tests of TLS termination (docs/operations.md "Config files and validation": server.tls_listen,
// tls.certificates, tls.min_version, allow_plain, upstream_tls; docs/
// "Automatic HTTPS" for how the TLS listener is built). Every certificate
// is made here, by a test CA, in t.TempDir().

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"wsgate/internal/config"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
)

const tlsIO = 5 * time.Second

// ---- certificates ----

// tlsCA is a test certificate authority.
type tlsCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate as a PEM file
	pool *x509.CertPool
	dir  string
}

// tlsLeaf is a certificate issued by a tlsCA, with its files.
type tlsLeaf struct {
	cert     *x509.Certificate
	pair     tls.Certificate
	certFile string
	keyFile  string
}

// spki is the base64 SHA-256 of the leaf's SubjectPublicKeyInfo, the form
// Chromium's --ignore-certificate-errors-spki-list takes.
func (l *tlsLeaf) spki() string {
	sum := sha256.Sum256(l.cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

var tlsSerial struct {
	sync.Mutex
	n int64
}

func nextTLSSerial() *big.Int {
	tlsSerial.Lock()
	defer tlsSerial.Unlock()
	tlsSerial.n++
	return big.NewInt(time.Now().UnixNano() + tlsSerial.n)
}

func newTLSCA(t testing.TB, name string) *tlsCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextTLSSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &tlsCA{cert: cert, key: key, dir: t.TempDir(), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	ca.file = filepath.Join(ca.dir, "ca.pem")
	tlsWritePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// leaf issues a server certificate for names: DNS names ("a.test",
// "*.w.test") or IP addresses.
func (ca *tlsCA) leaf(t testing.TB, names ...string) *tlsLeaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextTLSSerial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	base := strings.NewReplacer("*", "star", ":", "_").Replace(names[0]) + "-" + cert.SerialNumber.String()
	l := &tlsLeaf{cert: cert, certFile: filepath.Join(ca.dir, base+".pem"), keyFile: filepath.Join(ca.dir, base+".key")}
	tlsWritePEM(t, l.certFile, "CERTIFICATE", der)
	tlsWritePEM(t, l.keyFile, "PRIVATE KEY", keyDER)
	if l.pair, err = tls.LoadX509KeyPair(l.certFile, l.keyFile); err != nil {
		t.Fatal(err)
	}
	return l
}

func tlsWritePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ---- the gateway ----

// tlsGateway is a gateway serving a plain and a TLS listener on 127.0.0.1.
type tlsGateway struct {
	*Gateway
	PlainAddr string // host:port of `listen`
	TLSAddr   string // host:port of `tls_listen`
	TLSPort   string
	Logs      *syncBuffer
}

// tlsConfigYAML is a config with TLS on: the listen addresses are
// placeholders (startTLSGateway serves its own 127.0.0.1 listeners), then
// tls.certificates for leaves, the tlsExtra lines under `tls:` and the
// routes text as given.
func tlsConfigYAML(leaves []*tlsLeaf, tlsExtra, routes string) string {
	var b strings.Builder
	b.WriteString("server:\n  listen: \":8080\"\n  tls_listen: \":8443\"\n  shutdown_grace: 3s\n  close_spread: 0s\n")
	b.WriteString("defaults:\n  close_timeout: 500ms\n")
	b.WriteString("tls:\n  certificates:\n")
	for _, l := range leaves {
		fmt.Fprintf(&b, "    - {cert: %q, key: %q}\n", l.certFile, l.keyFile)
	}
	b.WriteString(tlsExtra)
	b.WriteString("routes:\n")
	b.WriteString(routes)
	return b.String()
}

// startTLSGateway parses yamlText and serves it on two fresh 127.0.0.1
// listeners, plain and TLS, until the test ends.
func startTLSGateway(t testing.TB, yamlText string) *tlsGateway {
	t.Helper()
	cfg, err := config.Parse("tls-test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yamlText)
	}
	logs := &syncBuffer{}
	g, err := New(cfg, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		plain.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, &Listeners{Plain: plain, TLS: tl}) }()
	_, port, _ := net.SplitHostPort(tl.Addr().String())
	gw := &tlsGateway{Gateway: g, PlainAddr: plain.Addr().String(), TLSAddr: tl.Addr().String(), TLSPort: port, Logs: logs}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("gateway did not stop within 10s")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	return gw
}

// tlsDial opens a TLS connection to the gateway's TLS listener with cfg.
func (gw *tlsGateway) tlsDial(cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: tlsIO}
	c, err := tls.DialWithDialer(d, "tcp", gw.TLSAddr, cfg)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(tlsIO))
	return c, nil
}

// wssDial opens wss://host:TLSPort+path through the gateway, trusting ca.
func (gw *tlsGateway) wssDial(t testing.TB, ca *tlsCA, host, path string) *websocket.Conn {
	t.Helper()
	c, resp, err := gw.wssDialErr(ca, host, path)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("wss dial %s%s: %v (status %d)", host, path, err, status)
	}
	return c
}

func (gw *tlsGateway) wssDialErr(ca *tlsCA, host, path string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{
		TLSClientConfig:  &tls.Config{RootCAs: ca.pool, ServerName: host},
		HandshakeTimeout: tlsIO,
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, gw.TLSAddr)
		},
	}
	return d.Dial("wss://"+net.JoinHostPort(host, gw.TLSPort)+path, nil)
}

// tlsEchoRoundTrip sends a text and a binary message on c and checks their
// echoes, then closes with 1000.
func tlsEchoRoundTrip(t testing.TB, c *websocket.Conn) {
	t.Helper()
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(tlsIO))
	_ = c.SetWriteDeadline(time.Now().Add(tlsIO))
	for _, m := range []struct {
		typ int
		p   []byte
	}{{websocket.TextMessage, []byte("hello over TLS")}, {websocket.BinaryMessage, []byte{0, 1, 2, 0xfe, 0xff}}} {
		if err := c.WriteMessage(m.typ, m.p); err != nil {
			t.Fatalf("write: %v", err)
		}
		typ, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ != m.typ || string(p) != string(m.p) {
			t.Fatalf("echo: got type %d %q, want type %d %q", typ, p, m.typ, m.p)
		}
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(tlsIO))
}

// ---- the upstream ----

// tlsUpstreamReq is what the upstream saw of one handshake.
type tlsUpstreamReq struct {
	Header     http.Header
	ServerName string // the SNI the gateway sent, wss:// only
}

// tlsEchoUpstream is a gorilla/websocket echo server, ws:// or wss://. It
// records each handshake request and the close code it receives.
type tlsEchoUpstream struct {
	URL    string // ws://127.0.0.1:port or wss://127.0.0.1:port
	Reqs   chan tlsUpstreamReq
	Closes chan int // the code of each Close received; -1: ended without one
}

// newTLSEchoUpstream starts an echo upstream; with leaf it serves wss://.
func newTLSEchoUpstream(t testing.TB, leaf *tlsLeaf) *tlsEchoUpstream {
	t.Helper()
	u := &tlsEchoUpstream{Reqs: make(chan tlsUpstreamReq, 16), Closes: make(chan int, 16)}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	var wg sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		rec := tlsUpstreamReq{Header: r.Header.Clone()}
		if r.TLS != nil {
			rec.ServerName = r.TLS.ServerName
		}
		u.Reqs <- rec
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			typ, p, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					u.Closes <- ce.Code
				} else {
					u.Closes <- -1
				}
				return
			}
			if err := c.WriteMessage(typ, p); err != nil {
				u.Closes <- -1
				return
			}
		}
	}))
	// The gateway's failed verifications end here as handshake errors;
	// the test asserts them on the gateway's side.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if leaf != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.pair}}
		srv.StartTLS()
		u.URL = "wss://" + srv.Listener.Addr().String()
	} else {
		srv.Start()
		u.URL = "ws://" + srv.Listener.Addr().String()
	}
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return u
}

func (u *tlsEchoUpstream) request(t testing.TB) tlsUpstreamReq {
	t.Helper()
	select {
	case r := <-u.Reqs:
		return r
	case <-time.After(tlsIO):
		t.Fatal("the upstream saw no handshake")
		return tlsUpstreamReq{}
	}
}

func (u *tlsEchoUpstream) closeCode(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case c := <-u.Closes:
		return c
	case <-time.After(within):
		t.Fatalf("the upstream's session did not end within %v", within)
		return 0
	}
}

// tlsRoute is a route's YAML text: name, path, one upstream, extra lines.
func tlsRoute(name, path, upstream string, extra ...string) string {
	s := fmt.Sprintf("  - name: %s\n    path: %s\n    upstreams: [%q]\n", name, path, upstream)
	for _, l := range extra {
		s += "    " + l + "\n"
	}
	return s
}

// ---- tests ----

// TestTLSCertificateBySNI: each static certificate is served for the names
// it covers (exact names, case-insensitively; a wildcard for exactly one
// label), the first one to a client that sends no SNI, and wss:// works
// through each of them.
func TestTLSCertificateBySNI(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "wsgate test CA")
	a := ca.leaf(t, "a.test")
	b := ca.leaf(t, "b.test", "b2.test")
	w := ca.leaf(t, "*.w.test")
	up := newTLSEchoUpstream(t, nil)
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{a, b, w}, "", tlsRoute("echo", "/ws", up.URL)))

	for _, tt := range []struct {
		sni  string
		want *tlsLeaf
	}{
		{"a.test", a}, {"b.test", b}, {"b2.test", b}, {"A.Test", a}, {"x.w.test", w}, {"other.w.test", w},
	} {
		c, err := gw.tlsDial(&tls.Config{ServerName: tt.sni, RootCAs: ca.pool})
		if err != nil {
			t.Errorf("SNI %q: %v", tt.sni, err)
			continue
		}
		got := c.ConnectionState().PeerCertificates[0]
		if !got.Equal(tt.want.cert) {
			t.Errorf("SNI %q: served the certificate for %v, want the one for %v", tt.sni, got.DNSNames, tt.want.cert.DNSNames)
		}
		c.Close()
	}

	// A wildcard covers one label only (RFC 6125 §6.4.3).
	if c, err := gw.tlsDial(&tls.Config{ServerName: "a.b.w.test", InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Errorf("SNI a.b.w.test: handshake succeeded with %v, want a failure", c.ConnectionState().PeerCertificates[0].DNSNames)
	}

	// Dialled by IP address, a client sends no SNI (RFC 6066 §3): the
	// first certificate is served.
	c, err := gw.tlsDial(&tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("no SNI: %v", err)
	}
	if got := c.ConnectionState().PeerCertificates[0]; !got.Equal(a.cert) {
		t.Errorf("no SNI: served %v, want the first certificate (a.test)", got.DNSNames)
	}
	c.Close()

	for _, host := range []string{"a.test", "b2.test", "x.w.test"} {
		tlsEchoRoundTrip(t, gw.wssDial(t, ca, host, "/ws"))
		if code := up.closeCode(t, tlsIO); code != 1000 {
			t.Errorf("%s: the upstream got close %d, want 1000", host, code)
		}
	}
}

// TestTLSCertificateByIP: a client that dials an IP address sends no SNI;
// it gets the static certificate covering the address it reached, not just
// the first one.
func TestTLSCertificateByIP(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "wsgate test CA")
	a := ca.leaf(t, "a.test")
	ip := ca.leaf(t, "127.0.0.1")
	up := newTLSEchoUpstream(t, nil)
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{a, ip}, "", tlsRoute("echo", "/ws", up.URL)))

	c, err := gw.tlsDial(&tls.Config{RootCAs: ca.pool})
	if err != nil {
		t.Fatalf("dialled by IP: %v", err)
	}
	if got := c.ConnectionState().PeerCertificates[0]; !got.Equal(ip.cert) {
		t.Errorf("dialled by IP: served %v %v, want the certificate for 127.0.0.1", got.DNSNames, got.IPAddresses)
	}
	c.Close()

	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, HandshakeTimeout: tlsIO}
	ws, _, err := d.Dial("wss://"+gw.TLSAddr+"/ws", nil)
	if err != nil {
		t.Fatalf("wss://%s: %v", gw.TLSAddr, err)
	}
	tlsEchoRoundTrip(t, ws)
	if code := up.closeCode(t, tlsIO); code != 1000 {
		t.Errorf("the upstream got close %d, want 1000", code)
	}
}

// TestTLSHandshakeTimeout: server.handshake_timeout bounds the TLS
// handshake too (a client that connects and sends nothing is dropped), and
// does not outlive it: an established wss:// session stays up longer.
func TestTLSHandshakeTimeout(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "wsgate test CA")
	a := ca.leaf(t, "a.test")
	up := newTLSEchoUpstream(t, nil)
	yaml := strings.Replace(tlsConfigYAML([]*tlsLeaf{a}, "", tlsRoute("echo", "/ws", up.URL)),
		"server:\n", "server:\n  handshake_timeout: 300ms\n", 1)
	gw := startTLSGateway(t, yaml)

	for _, sent := range []string{"", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"} { // nothing; a cut ClientHello
		conn, err := net.DialTimeout("tcp", gw.TLSAddr, tlsIO)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = conn.SetDeadline(start.Add(tlsIO))
		if _, err := io.WriteString(conn, sent); err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(conn)
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("sent %q: the connection was still open after %v", sent, tlsIO)
		} else if d := time.Since(start); d < 250*time.Millisecond {
			t.Errorf("sent %q: closed after %v, before handshake_timeout", sent, d)
		}
	}

	ws := gw.wssDial(t, ca, "a.test", "/ws")
	time.Sleep(800 * time.Millisecond)
	tlsEchoRoundTrip(t, ws)
	if code := up.closeCode(t, tlsIO); code != 1000 {
		t.Errorf("the upstream got close %d, want 1000", code)
	}
}

// TestTLSUnknownSNI: a name no certificate covers fails the TLS handshake
// cleanly (an alert, not a hang or a crash), is logged with the name, and
// the gateway goes on serving.
func TestTLSUnknownSNI(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "wsgate test CA")
	a := ca.leaf(t, "a.test")
	up := newTLSEchoUpstream(t, nil)
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{a}, "", tlsRoute("echo", "/ws", up.URL)))

	c, err := gw.tlsDial(&tls.Config{ServerName: "unknown.test", InsecureSkipVerify: true})
	if err == nil {
		c.Close()
		t.Fatalf("handshake for unknown.test succeeded, want a failure")
	}
	// crypto/tls reports the server's alert as "remote error: tls: …".
	if !strings.Contains(err.Error(), "remote error: tls:") {
		t.Errorf("client error %v: want a TLS alert from the server", err)
	}
	waitForTLS(t, "a log line naming unknown.test", func() bool {
		return len(gw.Logs.Lines("unknown.test", "TLS handshake error")) > 0
	})

	tlsEchoRoundTrip(t, gw.wssDial(t, ca, "a.test", "/ws"))
	if code := up.closeCode(t, tlsIO); code != 1000 {
		t.Errorf("the upstream got close %d, want 1000", code)
	}
}

// TestTLSPlainHTTPToTLSPort: plain HTTP sent to the TLS listener gets a 400
// or a closed connection, and the gateway goes on serving.
func TestTLSPlainHTTPToTLSPort(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "wsgate test CA")
	a := ca.leaf(t, "a.test")
	up := newTLSEchoUpstream(t, nil)
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{a}, "", tlsRoute("echo", "/ws", up.URL)))

	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
		tlsUpgradeReq("a.test", "/ws"),
		"\x00\x01\x02 garbage\r\n\r\n",
	} {
		conn, err := net.DialTimeout("tcp", gw.TLSAddr, tlsIO)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(tlsIO))
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(conn)
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%q: the connection stayed open %v without an answer", firstLineTLS(req), tlsIO)
		}
		if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.0 400 ") && !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
			t.Errorf("%q: got %q, want a 400 or a closed connection", firstLineTLS(req), got)
		}
	}
	tlsEchoRoundTrip(t, gw.wssDial(t, ca, "a.test", "/ws"))
	if code := up.closeCode(t, tlsIO); code != 1000 {
		t.Errorf("the upstream got close %d, want 1000", code)
	}
}

// TestTLSPlainListener: with TLS on, a plain ws:// upgrade on `listen` gets
// 403 "use wss://", unless its route has allow_plain: true; other requests
// are redirected to https on the TLS listener's port.
func TestTLSPlainListener(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "wsgate test CA")
	a := ca.leaf(t, "a.test")
	up := newTLSEchoUpstream(t, nil)
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{a}, "",
		tlsRoute("secure", "/ws", up.URL)+tlsRoute("open", "/open", up.URL, "allow_plain: true")))

	t.Run("upgrade refused", func(t *testing.T) {
		for _, path := range []string{"/ws", "/ws/room?x=1"} {
			resp, body := tlsPlainExchange(t, gw.PlainAddr, tlsUpgradeReq("a.test", path))
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "wss://") {
				t.Errorf("%s: got %d %q, want 403 naming wss://", path, resp.StatusCode, body)
			}
		}
		if len(gw.Logs.Lines(`"status":403`, "use wss://")) == 0 {
			t.Errorf("the 403 was not logged")
		}
	})

	// docs/handshake.md "Order of checks": "no route" comes first, on every listener.
	t.Run("no route", func(t *testing.T) {
		resp, body := tlsPlainExchange(t, gw.PlainAddr, tlsUpgradeReq("a.test", "/nowhere"))
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no route") {
			t.Errorf("got %d %q, want 404 no route", resp.StatusCode, body)
		}
	})

	t.Run("allow_plain", func(t *testing.T) {
		d := websocket.Dialer{HandshakeTimeout: tlsIO}
		c, resp, err := d.Dial("ws://"+gw.PlainAddr+"/open", nil)
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("ws:// on an allow_plain route: %v (status %d)", err, status)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		tlsEchoRoundTrip(t, c)
		if got := up.request(t).Header.Get("X-Forwarded-Proto"); got != "http" {
			t.Errorf("X-Forwarded-Proto for a ws:// client: %q, want http", got)
		}
		if code := up.closeCode(t, tlsIO); code != 1000 {
			t.Errorf("the upstream got close %d, want 1000", code)
		}
	})

	t.Run("redirect", func(t *testing.T) {
		_, plainPort, _ := net.SplitHostPort(gw.PlainAddr)
		for _, tt := range []struct {
			host, target, want string
		}{
			{"a.test:" + plainPort, "/ws?room=1&x=%2F", "https://a.test:" + gw.TLSPort + "/ws?room=1&x=%2F"},
			{"a.test", "/", "https://a.test:" + gw.TLSPort + "/"},
			{"127.0.0.1:" + plainPort, "/x", "https://127.0.0.1:" + gw.TLSPort + "/x"},
			{"[::1]:" + plainPort, "/x", "https://[::1]:" + gw.TLSPort + "/x"},
			{"[::1]", "/x", "https://[::1]:" + gw.TLSPort + "/x"},
			{"", "/x", "https://127.0.0.1:" + gw.TLSPort + "/x"}, // HTTP/1.0 without Host
		} {
			req := "GET " + tt.target + " HTTP/1.1\r\nHost: " + tt.host + "\r\n\r\n"
			if tt.host == "" {
				req = "GET " + tt.target + " HTTP/1.0\r\n\r\n"
			}
			resp, _ := tlsPlainExchange(t, gw.PlainAddr, req)
			if resp.StatusCode != http.StatusPermanentRedirect && resp.StatusCode != http.StatusMovedPermanently {
				t.Errorf("Host %s %s: status %d, want a permanent redirect", tt.host, tt.target, resp.StatusCode)
			}
			if got := resp.Header.Get("Location"); got != tt.want {
				t.Errorf("Host %s %s: Location %q, want %q", tt.host, tt.target, got, tt.want)
			}
		}
		// Followed by a client, the redirect reaches the TLS listener.
		client := &http.Client{
			Timeout: tlsIO,
			Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: ca.pool},
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					if strings.HasSuffix(addr, ":"+gw.TLSPort) {
						addr = gw.TLSAddr
					} else {
						addr = gw.PlainAddr
					}
					return (&net.Dialer{}).DialContext(ctx, network, addr)
				},
			},
		}
		resp, err := client.Get("http://a.test:" + plainPort + "/ws")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Request.URL.Scheme != "https" || resp.TLS == nil {
			t.Errorf("the redirect ended at %s, want https", resp.Request.URL)
		}
		// The TLS listener answers a GET without Upgrade like any
		// handshake check would (426), not with another redirect.
		if resp.StatusCode != http.StatusUpgradeRequired && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET https://a.test/ws: status %d, want 426 or 400", resp.StatusCode)
		}
	})
}

// TestTLSForwardedProto: a wss:// client's handshake reaches the upstream
// with X-Forwarded-Proto: https and Forwarded proto=https.
func TestTLSForwardedProto(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "wsgate test CA")
	a := ca.leaf(t, "a.test")
	up := newTLSEchoUpstream(t, nil)
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{a}, "", tlsRoute("echo", "/ws", up.URL)))

	tlsEchoRoundTrip(t, gw.wssDial(t, ca, "a.test", "/ws"))
	h := up.request(t).Header
	if got := h.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto %q, want https", got)
	}
	if got := h.Get("Forwarded"); !strings.Contains(got, "proto=https") {
		t.Errorf("Forwarded %q, want proto=https", got)
	}
	if got, want := h.Get("X-Forwarded-Host"), "a.test:"+gw.TLSPort; got != want {
		t.Errorf("X-Forwarded-Host %q, want %q", got, want)
	}
	if code := up.closeCode(t, tlsIO); code != 1000 {
		t.Errorf("the upstream got close %d, want 1000", code)
	}
}

// TestTLSUpstream: wss:// upstreams verified against upstream_tls.ca, with
// server_name naming the certificate when it differs from the dialled
// address; a certificate the CA did not sign is a 502 whose log says why.
func TestTLSUpstream(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "wsgate test CA")
	a := ca.leaf(t, "a.test")
	upCA := newTLSCA(t, "upstream private CA")
	otherCA := newTLSCA(t, "some other CA")
	byIP := newTLSEchoUpstream(t, upCA.leaf(t, "127.0.0.1"))
	byName := newTLSEchoUpstream(t, upCA.leaf(t, "backend.internal"))
	wsPath := func(u *tlsEchoUpstream) string { return u.URL + "/ws" }
	routes := tlsRoute("private-ca", "/ca", wsPath(byIP), fmt.Sprintf("upstream_tls: {ca: %q}", upCA.file)) +
		tlsRoute("wrong-ca", "/wrong", wsPath(byIP), fmt.Sprintf("upstream_tls: {ca: %q}", otherCA.file)) +
		tlsRoute("system-roots", "/system", wsPath(byIP)) +
		tlsRoute("server-name", "/name", wsPath(byName), fmt.Sprintf("upstream_tls: {ca: %q, server_name: backend.internal}", upCA.file)) +
		tlsRoute("no-server-name", "/noname", wsPath(byName), fmt.Sprintf("upstream_tls: {ca: %q}", upCA.file)) +
		tlsRoute("insecure", "/insecure", wsPath(byName), "upstream_tls: {insecure_skip_verify: true}")
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{a}, "", routes))

	works := func(t *testing.T, up *tlsEchoUpstream, path, sni string) {
		tlsEchoRoundTrip(t, gw.wssDial(t, ca, "a.test", path))
		r := up.request(t)
		if r.ServerName != sni {
			t.Errorf("the upstream saw SNI %q, want %q", r.ServerName, sni)
		}
		if got := r.Header.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("X-Forwarded-Proto %q, want https", got)
		}
		if code := up.closeCode(t, tlsIO); code != 1000 {
			t.Errorf("the upstream got close %d, want 1000", code)
		}
	}
	fails := func(t *testing.T, up *tlsEchoUpstream, path, route, why string) {
		_, resp, err := gw.wssDialErr(ca, "a.test", path)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("got %v (status %d), want 502", err, status)
		}
		waitForTLS(t, "a log line saying "+why, func() bool {
			return len(gw.Logs.Lines(`"route":"`+route+`"`, why)) > 0
		})
		select {
		case r := <-up.Reqs:
			t.Errorf("the upstream saw a handshake (%v) over an unverified connection", r.Header)
		default:
		}
	}

	t.Run("private CA", func(t *testing.T) { works(t, byIP, "/ca", "") })
	t.Run("server_name", func(t *testing.T) { works(t, byName, "/name", "backend.internal") })
	t.Run("insecure_skip_verify", func(t *testing.T) { works(t, byName, "/insecure", "") })
	t.Run("wrong CA", func(t *testing.T) {
		fails(t, byIP, "/wrong", "wrong-ca", "certificate signed by unknown authority")
	})
	t.Run("system roots", func(t *testing.T) {
		fails(t, byIP, "/system", "system-roots", "certificate signed by unknown authority")
	})
	t.Run("name mismatch", func(t *testing.T) {
		fails(t, byName, "/noname", "no-server-name", "certificate for 127.0.0.1")
	})
}

// TestTLSMinVersion: min_version "1.3" refuses a TLS 1.2-only client; the
// default (1.2) accepts it.
func TestTLSMinVersion(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "wsgate test CA")
	a := ca.leaf(t, "a.test")
	up := newTLSEchoUpstream(t, nil)
	route := tlsRoute("echo", "/ws", up.URL)
	only12 := &tls.Config{ServerName: "a.test", RootCAs: ca.pool, MaxVersion: tls.VersionTLS12}
	modern := &tls.Config{ServerName: "a.test", RootCAs: ca.pool}

	gw13 := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{a}, "  min_version: \"1.3\"\n", route))
	if c, err := gw13.tlsDial(only12); err == nil {
		c.Close()
		t.Errorf("min_version 1.3: a TLS 1.2-only client got through")
	} else if !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("min_version 1.3, TLS 1.2 client: %v, want a protocol version alert", err)
	}
	c, err := gw13.tlsDial(modern)
	if err != nil {
		t.Fatalf("min_version 1.3, TLS 1.3 client: %v", err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(v))
	}
	c.Close()

	gw12 := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{a}, "", route))
	c, err = gw12.tlsDial(only12)
	if err != nil {
		t.Fatalf("default min_version, TLS 1.2 client: %v", err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS12 {
		t.Errorf("negotiated %s, want TLS 1.2", tls.VersionName(v))
	}
	c.Close()
	if c, err := gw12.tlsDial(&tls.Config{ServerName: "a.test", RootCAs: ca.pool, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}); err == nil {
		c.Close()
		t.Errorf("a TLS 1.1 client got through the default min_version 1.2")
	}
}

// TestTLSALPN: the TLS listener offers h2 and http/1.1. A client offering
// only http/1.1 (every WebSocket client) gets it and its handshake works;
// an h2 connection's SETTINGS do not advertise extended CONNECT (RFC 8441
// SETTINGS_ENABLE_CONNECT_PROTOCOL), so a browser opens its WebSockets on
// HTTP/1.1; an HTTP client that can use h2 does.
func TestTLSALPN(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "wsgate test CA")
	a := ca.leaf(t, "a.test")
	up := newTLSEchoUpstream(t, nil)
	gw := startTLSGateway(t, tlsConfigYAML([]*tlsLeaf{a}, "", tlsRoute("echo", "/ws", up.URL)))

	c, err := gw.tlsDial(&tls.Config{ServerName: "a.test", RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("negotiated %q, want http/1.1", p)
	}
	if _, err := io.WriteString(c, tlsUpgradeReq("a.test", "/ws")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake on the http/1.1 connection: %d, want 101", resp.StatusCode)
	}
	up.request(t)

	// h2 is preferred by the server when offered; its first SETTINGS frame
	// has no ENABLE_CONNECT_PROTOCOL (0x8).
	c2, err := gw.tlsDial(&tls.Config{ServerName: "a.test", RootCAs: ca.pool, NextProtos: []string{"http/1.1", "h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if p := c2.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("a client offering h2 negotiated %q", p)
	}
	_ = c2.SetDeadline(time.Now().Add(tlsIO))
	if _, err := io.WriteString(c2, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	var head [9]byte
	if _, err := io.ReadFull(c2, head[:]); err != nil {
		t.Fatal(err)
	}
	n := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
	if head[3] != 0x4 || n%6 != 0 || n > 1024 {
		t.Fatalf("first h2 frame: type %d, length %d; want SETTINGS", head[3], n)
	}
	settings := make([]byte, n)
	if _, err := io.ReadFull(c2, settings); err != nil {
		t.Fatal(err)
	}
	ids := []int{}
	for i := 0; i < n; i += 6 {
		id := int(settings[i])<<8 | int(settings[i+1])
		ids = append(ids, id)
		if id == 0x8 {
			t.Errorf("the h2 server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL: browsers would try WebSockets over h2")
		}
	}
	if len(ids) == 0 {
		t.Errorf("empty SETTINGS: the check above proves nothing")
	}

	tr := &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{RootCAs: ca.pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, gw.TLSAddr)
		},
	}
	defer tr.CloseIdleConnections()
	hresp, err := (&http.Client{Transport: tr, Timeout: tlsIO}).Get("https://a.test:" + gw.TLSPort + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	hresp.Body.Close()
	// A route without http: proxy answers as before (426), now over h2.
	if hresp.ProtoMajor != 2 || hresp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("an h2-capable client got %s %d, want HTTP/2.0 426", hresp.Proto, hresp.StatusCode)
	}
}

// ---- small helpers ----

// tlsUpgradeReq is a WebSocket opening handshake request.
func tlsUpgradeReq(host, target string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// tlsPlainExchange sends req on a new connection to addr and reads the answer.
func tlsPlainExchange(t testing.TB, addr, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, tlsIO)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(tlsIO))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", firstLineTLS(req), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp, string(body)
}

func firstLineTLS(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

func waitForTLS(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(tlsIO)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTLSNetHTTPRefusalsLogged: requests net/http refuses by itself on the
// TLS listener (its answer is encrypted below the gateway) are logged and
// counted as rejected handshakes too: 400 for a malformed request, 431 for
// headers over max_header_bytes; the gateway's own answers (404, and a
// 426 on a keep-alive connection before a malformed request) once each.
func TestTLSNetHTTPRefusalsLogged(t *testing.T) {
	t.Parallel()
	ca := newTLSCA(t, "refusal CA")
	leaf := ca.leaf(t, "a.test")
	yaml := strings.Replace(tlsConfigYAML([]*tlsLeaf{leaf}, "", tlsRoute("echo", "/ws", "builtin:echo")),
		"  close_spread: 0s\n", "  close_spread: 0s\n  max_header_bytes: 8KiB\n", 1)
	gw := startTLSGateway(t, yaml)
	exchange := func(reqs ...string) []int {
		t.Helper()
		conn, err := gw.tlsDial(&tls.Config{ServerName: "a.test", RootCAs: ca.pool})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		var statuses []int
		for _, req := range reqs {
			if _, err := io.WriteString(conn, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%q: %v", firstLineTLS(req), err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses = append(statuses, resp.StatusCode)
		}
		return statuses
	}
	rejected := func(status string) float64 { return rejectedCount(t, gw.Gateway, status) }
	if got := exchange("GET /ws HTTP/1.1\r\nHost: a.test\r\nno colon here\r\n\r\n"); got[0] != 400 {
		t.Fatalf("malformed: status %d, want 400", got[0])
	}
	waitForTLS(t, "the 400 to be counted", func() bool { return rejected("400") == 1 })
	big := "GET /ws HTTP/1.1\r\nHost: a.test\r\nX-Big: " + strings.Repeat("b", 16<<10) + "\r\n\r\n"
	if got := exchange(big); got[0] != 431 {
		t.Fatalf("big headers: status %d, want 431", got[0])
	}
	waitForTLS(t, "the 431 to be counted", func() bool { return rejected("431") == 1 })
	// The gateway's own answers, then a malformed request on the same
	// connection: each counted once.
	if got := exchange("GET /nowhere HTTP/1.1\r\nHost: a.test\r\n\r\n", "GET /ws HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost a.test\r\n\r\n"); got[0] != 404 || got[1] != 426 || got[2] != 400 {
		t.Fatalf("keep-alive: statuses %v, want [404 426 400]", got)
	}
	waitForTLS(t, "the second 400 to be counted", func() bool { return rejected("400") == 2 })
	if n := rejected("404"); n != 1 {
		t.Errorf(`rejected{route="",status="404"} = %v, want 1`, n)
	}
	if n := len(gw.Logs.Lines(`"event":"rejected"`, `"status":400`, "over TLS")); n != 2 {
		t.Errorf("%d rejection lines for the 400s over TLS, want 2", n)
	}
	if n := len(gw.Logs.Lines(`"event":"rejected"`, `"status":431`)); n != 1 {
		t.Errorf("%d rejection lines for the 431, want 1", n)
	}
}

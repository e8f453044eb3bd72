package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startBackend serves the echo/sink backend on a loopback port for the
// duration of the test.
func startBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = serveBackend(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "ws://" + ln.Addr().String()
}

// startTLSBackend serves the backend behind a TLS listener with a fresh
// self-signed certificate for 127.0.0.1, and returns its wss:// URL and
// the certificate's PEM file.
func startTLSBackend(t *testing.T) (url, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wsbench test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = serveBackend(ctx, tls.NewListener(ln, cfg))
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "wss://" + ln.Addr().String(), caFile
}

func short(scenario, url string) options {
	sc := scenarios[scenario]
	return options{
		Scenario: scenario, URL: url,
		Conns: min(sc.conns, 8), Inflight: sc.inflight, Size: min(sc.size, 64<<10),
		Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond,
		Sessions: 64, Settle: 50 * time.Millisecond, Sources: 4,
		PIDs: []int{os.Getpid()},
	}
}

func checkLatencies(t *testing.T, r *result) {
	t.Helper()
	if !(r.P50us > 0 && r.P50us <= r.P99us && r.P99us <= r.P999us && r.P999us <= r.MaxUs) {
		t.Errorf("percentiles out of order: p50 %v p99 %v p99.9 %v max %v", r.P50us, r.P99us, r.P999us, r.MaxUs)
	}
	if r.P50us > 1e6 {
		t.Errorf("p50 %v µs on loopback", r.P50us)
	}
}

func TestScenariosDirect(t *testing.T) {
	url := startBackend(t)
	ctx := context.Background()

	t.Run("echo-small", func(t *testing.T) {
		r, err := runEcho(ctx, short("echo-small", url))
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || r.Ops == 0 || r.Value <= 0 {
			t.Fatalf("ops %d, value %v, errors %d (%s)", r.Ops, r.Value, r.Errors, r.FirstError)
		}
		checkLatencies(t, r)
		if r.GatewayCPUs <= 0 {
			t.Errorf("CPU of the watched process (this test) = %v, want > 0", r.GatewayCPUs)
		}
	})
	t.Run("echo-pipelined", func(t *testing.T) {
		r, err := runEcho(ctx, short("echo-pipelined", url))
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || r.Ops == 0 {
			t.Fatalf("ops %d, errors %d (%s)", r.Ops, r.Errors, r.FirstError)
		}
		checkLatencies(t, r)
	})
	t.Run("stream-large", func(t *testing.T) {
		r, err := runStream(ctx, short("stream-large", url))
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || r.Ops == 0 || r.Value <= 0 || r.DurationS < 0.3 {
			t.Fatalf("ops %d, MB/s %v, window %v s, errors %d (%s)", r.Ops, r.Value, r.DurationS, r.Errors, r.FirstError)
		}
	})
	t.Run("handshake-rate", func(t *testing.T) {
		r, err := runHandshake(ctx, short("handshake-rate", url))
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || r.Ops == 0 {
			t.Fatalf("sessions %d, errors %d (%s)", r.Ops, r.Errors, r.FirstError)
		}
		checkLatencies(t, r)
	})
	t.Run("idle-mem", func(t *testing.T) {
		o := short("idle-mem", url)
		r, err := runIdle(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || r.Opened != o.Sessions || r.ClosedClean != o.Sessions || r.ClosedEarly != 0 {
			t.Fatalf("opened %d, closed cleanly %d, early %d of %d; errors %d (%s)",
				r.Opened, r.ClosedClean, r.ClosedEarly, o.Sessions, r.Errors, r.FirstError)
		}
		if r.RSSBeforeKiB <= 0 || r.RSSAfterKiB <= 0 || r.Metric != "kib_per_session" {
			t.Errorf("RSS before %d after %d KiB, metric %q", r.RSSBeforeKiB, r.RSSAfterKiB, r.Metric)
		}
	})
}

// TestScenariosDeflate: echo-deflate, and idle-mem with compression in
// both modes, against the backend directly: compression is negotiated and
// every echo comes back compressed, byte for byte.
func TestScenariosDeflate(t *testing.T) {
	url := startBackend(t)
	ctx := context.Background()
	t.Run("echo-deflate", func(t *testing.T) {
		o := short("echo-deflate", url)
		o.Deflate = scenarios["echo-deflate"].deflate
		r, err := runEcho(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || r.Ops == 0 || r.Value <= 0 {
			t.Fatalf("ops %d, value %v, errors %d (%s)", r.Ops, r.Value, r.Errors, r.FirstError)
		}
		checkLatencies(t, r)
	})
	for _, mode := range []string{deflateNoTakeover, deflateTakeover} {
		t.Run("idle-mem "+mode, func(t *testing.T) {
			o := short("idle-mem", url)
			o.Deflate, o.Size = mode, 1024
			r, err := runIdle(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Errors != 0 || r.Opened != o.Sessions || r.ClosedClean != o.Sessions {
				t.Fatalf("opened %d, closed cleanly %d of %d; errors %d (%s)", r.Opened, r.ClosedClean, o.Sessions, r.Errors, r.FirstError)
			}
		})
	}
	t.Run("the payload compresses about 4:1", func(t *testing.T) {
		p := jsonPayload(1024, 3)
		z := compressMessage(p)
		if len(p) != 1024 || len(z)*3 > len(p) || len(z)*6 < len(p) {
			t.Fatalf("%d bytes compress to %d", len(p), len(z))
		}
	})
	t.Run("not negotiated is an error", func(t *testing.T) {
		cl, err := newClient(url, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		cl.deflate, _ = deflateOffer(deflateNoTakeover)
		cl.deflate.Offers[0].ServerMaxWindowBits = 9 // the backend answers without it: refused
		if _, err := cl.dial(ctx, "/echo"); err == nil {
			t.Fatal("dial succeeded with an answer that accepts none of the offers")
		}
	})
}

// TestScenariosTLS runs every scenario over wss://, with -insecure's
// configuration (as compare.sh does against wsgate-tls).
func TestScenariosTLS(t *testing.T) {
	url, _ := startTLSBackend(t)
	ctx := context.Background()
	insecure, err := clientTLS(true, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"echo-small", "echo-pipelined", "stream-large", "handshake-rate", "idle-mem"} {
		t.Run(name, func(t *testing.T) {
			o := short(name, url)
			o.TLS = insecure
			if name == "handshake-rate" {
				// A session here is a TLS handshake too: under -race on a
				// loaded machine one may outlast the short window, which
				// then counts none.
				o.Duration = 3 * time.Second
			}
			r, err := scenarios[name].run(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Errors != 0 || r.Ops == 0 {
				t.Fatalf("ops %d, errors %d (%s)", r.Ops, r.Errors, r.FirstError)
			}
			if name == "idle-mem" && (r.Opened != o.Sessions || r.ClosedClean != o.Sessions || r.ClosedEarly != 0) {
				t.Fatalf("opened %d, closed cleanly %d, early %d of %d", r.Opened, r.ClosedClean, r.ClosedEarly, o.Sessions)
			}
		})
	}
}

// TestRunTLSVerification runs the command over wss:// with -ca and
// -insecure, and checks that the certificate is verified otherwise.
func TestRunTLSVerification(t *testing.T) {
	url, caFile := startTLSBackend(t)
	base := []string{"run", "-scenario", "idle-mem", "-url", url, "-sessions", "8", "-settle", "0s", "-conns", "4"}
	for _, tc := range []struct {
		flags  []string
		code   int
		failed bool // every dial fails: errors in the JSON line
	}{
		{[]string{"-ca", caFile}, 0, false},
		{[]string{"-insecure"}, 0, false},
		{nil, 0, true}, // the system roots do not know the certificate
		{[]string{"-insecure", "-ca", caFile}, 2, false},
		{[]string{"-ca", filepath.Join(t.TempDir(), "missing.pem")}, 2, false},
	} {
		var out, errb bytes.Buffer
		code := run(append(append([]string{}, base...), tc.flags...), &out, &errb)
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d; stderr %s", tc.flags, code, tc.code, errb.String())
			continue
		}
		if code != 0 {
			continue
		}
		var r result
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%q: %v in %q", tc.flags, err, out.String())
		}
		switch {
		case tc.failed && (r.Opened != 0 || !strings.Contains(r.FirstError, "certificate")):
			t.Errorf("%q: opened %d, first error %q; want none opened, a certificate error", tc.flags, r.Opened, r.FirstError)
		case !tc.failed && (r.Errors != 0 || r.Opened != 8 || r.ClosedClean != 8):
			t.Errorf("%q: opened %d, closed cleanly %d, errors %d (%s)", tc.flags, r.Opened, r.ClosedClean, r.Errors, r.FirstError)
		}
	}
}

// TestRunPrintsOneJSONLine runs the command as compare.sh does.
func TestRunPrintsOneJSONLine(t *testing.T) {
	url := startBackend(t)
	var out, errb bytes.Buffer
	code := run([]string{"run", "-scenario", "echo-small", "-url", url, "-label", "direct",
		"-conns", "4", "-duration", "200ms", "-warmup", "50ms"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line, got %q", out.String())
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scenario", "label", "metric", "value", "unit", "ops", "p99_us", "errors"} {
		if _, ok := r[k]; !ok {
			t.Errorf("no %q in %s", k, lines[0])
		}
	}
	if r["label"] != "direct" || r["metric"] != "msgs_per_s" || r["value"].(float64) <= 0 {
		t.Errorf("unexpected output %s", lines[0])
	}
}

func TestRunRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"run"},
		{"run", "-url", "ws://127.0.0.1:1", "-scenario", "nope"},
		{"run", "-url", "ws://127.0.0.1:1", "-pid", "x"},
		{"run", "-url", "ws://127.0.0.1:1", "-insecure", "-ca", "x.pem"},
		{"frobnicate"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestRunFailsOnUnreachableTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var out, errb bytes.Buffer
	if code := run([]string{"run", "-url", "ws://" + addr, "-duration", "100ms"}, &out, &errb); code != 1 {
		t.Errorf("exit %d, want 1; stderr %s", code, errb.String())
	}
}

func TestHistQuantiles(t *testing.T) {
	t.Parallel()
	var h hist
	// 1..100000 µs, uniform: the q-quantile is q*100000 µs.
	for i := 1; i <= 100000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := q * 100000 * 1000
		got := float64(h.quantile(q))
		if d := (got - want) / want; d > 1.0/64 || d < -1.0/64 {
			t.Errorf("q%v = %v ns, want %v ± 1.6%%", q, got, want)
		}
	}
	if h.quantile(1) != 100*time.Millisecond {
		t.Errorf("max quantile = %v", h.quantile(1))
	}
	var empty hist
	if empty.quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
}

func TestHistBucketsAreMonotonic(t *testing.T) {
	t.Parallel()
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 100000 {
		v := r.Int64N(1 << 40)
		b := bucket(v)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucket(%d) = %d out of range", v, b)
		}
		if bucket(v+1) < b {
			t.Fatalf("bucket(%d) = %d > bucket(%d) = %d", v, b, v+1, bucket(v+1))
		}
		mid := bucketMid(b)
		if d := float64(mid-v) / float64(v+1); d > 1.0/64 || d < -1.0/64 {
			t.Fatalf("value %d in bucket %d with middle %d", v, b, mid)
		}
	}
	if b := bucket(1<<63 - 1); b >= histBuckets {
		t.Fatalf("bucket(max int64) = %d", b)
	}
}

func TestMergeAddsCounts(t *testing.T) {
	t.Parallel()
	var a, b hist
	a.record(time.Millisecond)
	b.record(3 * time.Millisecond)
	b.record(5 * time.Millisecond)
	a.merge(&b)
	if a.n != 3 || a.max != int64(5*time.Millisecond) {
		t.Fatalf("n %d max %d", a.n, a.max)
	}
	if q := a.quantile(0.5); q < 2900*time.Microsecond || q > 3100*time.Microsecond {
		t.Fatalf("median %v, want ~3ms", q)
	}
}

// Command wsbench is the load generator of wsgate's benchmarks, and the
// upstream they relay to.
//
//	wsbench backend -listen 127.0.0.1:9100
//	wsbench run -scenario echo-small -url ws://127.0.0.1:8080 [-pid PID] [flags]
//	wsbench run -scenario idle-mem -url wss://127.0.0.1:8443 -insecure -pid PID
//
// The backend echoes every frame on any path and discards everything on a
// path ending in /sink. A run prints one line of JSON and exits; it is
// bounded in time (warmup + duration, plus bounded setup and teardown)
// whatever the target does. Scenarios:
//
//	echo-small      64 connections, each a closed loop of one 128-byte text
//	                message and its echo: msg/s and RTT p50/p99/p999
//	echo-pipelined  the same with 16 messages in flight per connection
//	stream-large    4 connections sending 1 MiB binary messages one way to
//	                the sink: MB/s delivered
//	handshake-rate  16 dialers each opening a session, exchanging one
//	                message and closing it: sessions/s and connect p99
//	idle-mem        9,000 sessions opened and held, then closed cleanly:
//	                the gateway's RSS growth per session (needs -pid)
//	broadcast       -sessions sessions tagged by the backend get broadcasts
//	                (POST /broadcast on -admin) back to back while 16
//	                other sessions echo: broadcast duration, echo RTT p99
//	                with and without (wsgate only)
//
// A wss:// URL is dialled over TLS (HTTP/1.1 by ALPN): its certificate is
// checked against the system roots, or against -ca FILE (PEM), or not at
// all with -insecure (a benchmark's self-signed certificate).
//
// With -pid the gateway's CPU time over the measured window is read from
// /proc and reported per operation. bench/compare.sh drives wsbench
// against wsgate, nginx, HAProxy, Caddy and no proxy at all.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  wsbench run -scenario NAME -url ws[s]://HOST:PORT [flags] one measured run, one JSON line
  wsbench backend -listen ADDR                             echo (any path) / sink (*/sink) upstream
  wsbench help
`

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "run":
		return runCmd(ctx, args, stdout, stderr)
	case "backend":
		return backendCmd(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "wsbench: unknown command %q\n%s", cmd, usage)
	return 2
}

func backendCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsbench backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9100", "address to listen on")
	prof := fs.String("cpuprofile", "", "write a CPU profile of the backend's whole life to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if stop, err := startProfile(*prof); err != nil {
		fmt.Fprintln(stderr, "wsbench:", err)
		return 1
	} else {
		defer stop()
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "wsbench:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wsbench backend listening on %s\n", ln.Addr())
	if err := serveBackend(ctx, ln); err != nil {
		fmt.Fprintln(stderr, "wsbench:", err)
		return 1
	}
	return 0
}

// startProfile starts a CPU profile into path ("" = none); stop ends it.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func scenarioNames() string {
	var names []string
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsbench run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.Scenario, "scenario", "echo-small", "one of: "+scenarioNames())
	fs.StringVar(&o.URL, "url", "", "target, ws://HOST:PORT[/prefix] or wss://…; /echo or /sink is appended")
	fs.StringVar(&o.Label, "label", "", "name of the target, copied to the output")
	fs.IntVar(&o.Conns, "conns", 0, "connections, or concurrent dialers (0: the scenario's default)")
	fs.IntVar(&o.Inflight, "inflight", 0, "messages in flight per connection (echo; 0: default)")
	fs.IntVar(&o.Size, "size", 0, "message size in bytes (0: the scenario's default)")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "measured window")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured time before the window")
	fs.IntVar(&o.Sessions, "sessions", 9000, "idle-mem: sessions to hold open")
	fs.DurationVar(&o.Settle, "settle", 2*time.Second, "idle-mem: wait after opening before reading RSS")
	fs.StringVar(&o.Admin, "admin", "", "broadcast: the gateway's admin listener, http://HOST:PORT")
	tokenFile := fs.String("admin-token-file", "", "broadcast: file holding the admin bearer token (server.admin_token_file)")
	pids := fs.String("pid", "", "comma-separated PIDs of the gateway (descendants included), for CPU and RSS")
	fs.IntVar(&o.Sources, "sources", 16, "spread connections over this many source addresses 127.0.0.2…")
	fs.StringVar(&o.Deflate, "deflate", "", "permessage-deflate: off, no_context_takeover or context_takeover (default: the scenario's; echo-deflate: no_context_takeover)")
	insecure := fs.Bool("insecure", false, "wss://: do not verify the server's certificate (self-signed benchmark certificates)")
	caFile := fs.String("ca", "", "wss://: verify the server's certificate against the CAs of this PEM file instead of the system roots")
	prof := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	tlsConf, err := clientTLS(*insecure, *caFile)
	if err != nil {
		fmt.Fprintln(stderr, "wsbench:", err)
		return 2
	}
	o.TLS = tlsConf
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "wsbench:", err)
			return 2
		}
		o.AdminToken = strings.TrimSpace(string(b))
	}
	if stop, err := startProfile(*prof); err != nil {
		fmt.Fprintln(stderr, "wsbench:", err)
		return 1
	} else {
		defer stop()
	}
	sc, ok := scenarios[o.Scenario]
	if !ok || o.URL == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wsbench: need -url and -scenario (one of %s)\n", scenarioNames())
		return 2
	}
	for _, f := range strings.Split(*pids, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil {
			fmt.Fprintf(stderr, "wsbench: bad -pid %q\n", f)
			return 2
		}
		o.PIDs = append(o.PIDs, p)
	}
	if o.Conns == 0 {
		o.Conns = sc.conns
	}
	if o.Inflight == 0 {
		o.Inflight = sc.inflight
	}
	if o.Size == 0 {
		o.Size = sc.size
	}
	if o.Deflate == "" {
		o.Deflate = sc.deflate
	}
	// Every run stops by itself: setup, teardown and stragglers get a
	// bounded time on top of the window.
	ctx, cancel := context.WithTimeout(ctx, o.Warmup+o.Duration+o.Settle+2*time.Minute)
	defer cancel()
	r, err := sc.run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "wsbench: %s: %v\n", o.Scenario, err)
		return 1
	}
	r.Scenario, r.Label, r.URL = o.Scenario, o.Label, o.URL
	r.Conns, r.MsgBytes = o.Conns, o.Size
	if o.Scenario != "idle-mem" {
		r.WarmupS = o.Warmup.Seconds()
	}
	if sc.inflight > 0 {
		r.Inflight = o.Inflight
	}
	b, _ := json.Marshal(r)
	fmt.Fprintln(stdout, string(b))
	return 0
}

// clientTLS is the TLS configuration of wss:// dials: nil (system roots)
// unless -insecure or -ca is given. One configuration serves every
// connection; the dialer clones it per dial.
func clientTLS(insecure bool, caFile string) (*tls.Config, error) {
	if !insecure && caFile == "" {
		return nil, nil
	}
	if insecure && caFile != "" {
		return nil, errors.New("-insecure and -ca exclude each other")
	}
	cfg := &tls.Config{InsecureSkipVerify: insecure}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca %s: no PEM certificate", caFile)
		}
	}
	return cfg, nil
}

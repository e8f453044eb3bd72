package main

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wsgate/internal/config"
	"wsgate/proxy"
)

// TestBroadcastScenario runs the broadcast scenario through a real gateway
// (in this process) with an admin listener.
func TestBroadcastScenario(t *testing.T) {
	backend := startBackend(t)
	cfg, err := config.Parse("bench.yaml", []byte("routes: [{name: bench, path: /, upstreams: [\""+backend+"\"]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := proxy.New(cfg, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(ctx, &proxy.Listeners{Plain: plain, Admin: admin})
	}()
	defer func() {
		cancel()
		<-done
	}()
	o := short("broadcast", "ws://"+plain.Addr().String())
	o.Admin = "http://" + admin.Addr().String()
	o.Sessions = 50
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	r, err := runBroadcast(rctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.Ops == 0 || r.Reached != int64(o.Sessions) {
		t.Fatalf("broadcasts %d reaching %d of %d sessions; errors %d (%s)", r.Ops, r.Reached, o.Sessions, r.Errors, r.FirstError)
	}
	if !(r.BcastP50ms > 0 && r.BcastP50ms <= r.BcastMaxMs) || r.BaseP99us <= 0 {
		t.Errorf("broadcast p50 %v max %v ms, baseline p99 %v us", r.BcastP50ms, r.BcastMaxMs, r.BaseP99us)
	}
	checkLatencies(t, r)
}

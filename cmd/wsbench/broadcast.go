package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"wsgate/frame"
)

// runBroadcast is broadcast: it opens Sessions sessions that the backend
// tags "bench:bcast" (X-Wsgate-Tags on its 101) and Conns untagged echo
// sessions, then measures, in two windows of Duration each:
//
//  1. the echo sessions alone (a closed loop of one Size-byte message each):
//     the baseline RTT;
//  2. the same echo loop while broadcasts go to the tag back to back, each
//     POST /broadcast?tag=bench:bcast on the gateway's admin listener
//     (-admin) followed by a wait until every tagged session has the
//     message: the broadcast's duration (POST sent to the last delivery)
//     and the echo RTT meanwhile.
//
// The headline is the median broadcast duration in milliseconds.
func runBroadcast(ctx context.Context, o options) (*result, error) {
	if o.Admin == "" {
		return nil, errors.New("broadcast needs -admin http://HOST:PORT (the gateway's admin listener)")
	}
	cl, err := newClient(o.URL, o.Sources, o.TLS)
	if err != nil {
		return nil, err
	}
	const tag = "bench:bcast"
	targets, err := dialAll(ctx, cl, "/echo?tags="+tag, o.Sessions)
	if err != nil {
		return nil, err
	}
	stopT := abortOnCancel(ctx, targets)
	defer stopT()
	echoes, err := dialAll(ctx, cl, "/echo", o.Conns)
	if err != nil {
		return nil, err
	}
	stopE := abortOnCancel(ctx, echoes)
	defer stopE()

	// Every target reads on its own goroutine and counts each broadcast
	// message (numbered) as it arrives.
	var e errs
	var got atomic.Int64 // deliveries of the current round
	var round atomic.Int64
	var wg sync.WaitGroup
	for _, c := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, p, _, err := c.readMessage()
				if err != nil {
					if errors.Is(err, errClosed) {
						_, _ = io.Copy(io.Discard, c.br) // until the server's FIN
					} else if ctx.Err() == nil && round.Load() >= 0 {
						e.add(fmt.Errorf("broadcast target: %w", err))
					}
					c.nc.Close()
					return
				}
				if string(p) == fmt.Sprint("bcast-", round.Load()) {
					got.Add(1)
				}
			}
		}()
	}

	r := &result{Sessions: o.Sessions}
	probe := newProbe(o.PIDs)
	// Window 1: the baseline.
	base := echoWindow(ctx, echoes, o, &e)
	r.BaseP99us = us(base.quantile(0.99))
	// Window 2: broadcasts back to back under the echo load.
	var durs []time.Duration
	var reached int64
	start := time.Now()
	winStart := start.Add(o.Warmup)
	winEnd := winStart.Add(o.Duration)
	var h hist
	var ewg sync.WaitGroup
	ewg.Add(1)
	go func() {
		defer ewg.Done()
		h = *echoLoad(echoes, o, winStart, winEnd, &e)
	}()
	sleepUntil(ctx, winStart)
	probe.begin()
	hc := &http.Client{Timeout: 30 * time.Second}
	for n := int64(1); time.Now().Before(winEnd) && ctx.Err() == nil; n++ {
		round.Store(n)
		got.Store(0)
		t0 := time.Now()
		sessions, err := postBroadcast(ctx, hc, o.Admin, o.AdminToken, tag, fmt.Sprint("bcast-", n))
		if err != nil {
			e.add(err)
			break
		}
		reached = int64(sessions)
		deadline := t0.Add(30 * time.Second)
		for got.Load() < int64(o.Sessions) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(200 * time.Microsecond)
		}
		if g := got.Load(); g < int64(o.Sessions) {
			e.add(fmt.Errorf("broadcast %d reached %d of %d sessions within 30s", n, g, o.Sessions))
			break
		}
		durs = append(durs, time.Since(t0))
	}
	r.Ops = int64(len(durs))
	probe.end(r)
	ewg.Wait()
	round.Store(-1)
	closeAll(echoes)
	// The targets' readers see the server's Close reply and end.
	closePayload := frame.AppendClose(nil, frame.CloseNormal, "")
	for _, c := range targets {
		_ = c.nc.SetDeadline(time.Now().Add(10 * time.Second))
		var cb [16]byte
		_ = c.write(appendMasked(cb[:0], frame.OpClose, closePayload))
	}
	wg.Wait()

	r.Reached = reached
	r.DurationS = o.Duration.Seconds()
	r.P50us, r.P99us, r.P999us, r.MaxUs = us(h.quantile(0.50)), us(h.quantile(0.99)), us(h.quantile(0.999)), us(time.Duration(h.max))
	if len(durs) > 0 {
		slices.Sort(durs)
		r.BcastP50ms = float64(durs[len(durs)/2]) / 1e6
		r.BcastMaxMs = float64(durs[len(durs)-1]) / 1e6
	}
	r.Metric, r.Unit, r.Value = "broadcast_p50_ms", "ms", r.BcastP50ms
	e.fill(r)
	return r, nil
}

// echoWindow runs the echo loop on conns for a warm-up and a window and
// returns its RTT histogram.
func echoWindow(ctx context.Context, conns []*conn, o options, e *errs) *hist {
	winStart := time.Now().Add(o.Warmup)
	winEnd := winStart.Add(o.Duration)
	h := echoLoad(conns, o, winStart, winEnd, e)
	sleepUntil(ctx, winEnd)
	return h
}

// echoLoad runs one echo worker per connection until winEnd and merges
// their histograms.
func echoLoad(conns []*conn, o options, winStart, winEnd time.Time, e *errs) *hist {
	hists := make([]*hist, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		hists[i] = new(hist)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := echoWorker(c, 1, textPayload(o.Size, i), winStart, winEnd, hists[i]); err != nil {
				e.add(err)
			}
		}()
	}
	wg.Wait()
	var h hist
	for _, x := range hists {
		h.merge(x)
	}
	return &h
}

// postBroadcast sends one broadcast and returns how many sessions the
// gateway queued it for.
func postBroadcast(ctx context.Context, hc *http.Client, admin, token, tag, msg string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(admin, "/")+"/broadcast?tag="+tag, strings.NewReader(msg))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "text/plain")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("POST /broadcast: %s %s", resp.Status, b)
	}
	var v struct {
		Sessions int `json:"sessions"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, fmt.Errorf("POST /broadcast: %q: %w", b, err)
	}
	return v.Sessions, nil
}

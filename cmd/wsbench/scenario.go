package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"wsgate/frame"
)

// options are the settings of one run; zero values take the scenario's
// defaults (see scenarios).
type options struct {
	Scenario string
	URL      string
	Label    string
	Conns    int           // connections (echo, stream) or concurrent dialers
	Inflight int           // messages in flight per connection (echo)
	Size     int           // message size in bytes
	Duration time.Duration // measured window
	Warmup   time.Duration // before the window, not counted
	Sessions int           // idle-mem: sessions held open
	Settle   time.Duration // idle-mem: wait after opening, before reading RSS
	PIDs     []int         // the gateway's processes (their descendants too)
	Sources  int           // source addresses 127.0.0.2… to spread over; <=1: the default
	Deflate  string        // permessage-deflate: off, no_context_takeover, context_takeover (deflate.go)
	TLS      *tls.Config   // for wss:// URLs; nil: verify against the system roots
	// broadcast: the gateway's admin listener and its bearer token.
	Admin, AdminToken string
}

// result is one line of JSON output. Value/Metric is the headline figure
// of the scenario, so a script can treat every scenario alike.
type result struct {
	Scenario string  `json:"scenario"`
	Label    string  `json:"label,omitempty"`
	URL      string  `json:"url"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`

	Conns     int     `json:"conns"`
	Inflight  int     `json:"inflight,omitempty"`
	MsgBytes  int     `json:"msg_bytes"`
	WarmupS   float64 `json:"warmup_s,omitempty"`
	DurationS float64 `json:"duration_s"` // the measured window, as it happened
	Ops       int64   `json:"ops"`        // messages, MiB messages or sessions in the window

	P50us  float64 `json:"p50_us,omitempty"` // RTT (echo) or connect time (handshake-rate)
	P99us  float64 `json:"p99_us,omitempty"`
	P999us float64 `json:"p999_us,omitempty"`
	MaxUs  float64 `json:"max_us,omitempty"`

	// The gateway's CPU over the window, from /proc (when -pid is given).
	GatewayCPUs       float64 `json:"gateway_cpu_s,omitempty"`
	GatewayCPUPerOpUs float64 `json:"gateway_cpu_us_per_op,omitempty"`

	// idle-mem
	Sessions      int     `json:"sessions,omitempty"`
	Opened        int     `json:"opened,omitempty"`
	OpenS         float64 `json:"open_s,omitempty"`
	RSSBeforeKiB  int64   `json:"rss_before_kib,omitempty"`
	RSSAfterKiB   int64   `json:"rss_after_kib,omitempty"`
	KiBPerSession float64 `json:"kib_per_session,omitempty"`
	ClosedClean   int     `json:"closed_clean,omitempty"`
	ClosedEarly   int64   `json:"closed_early,omitempty"`
	CloseS        float64 `json:"close_s,omitempty"`

	// broadcast: sessions reached per broadcast, its duration (median,
	// max), and the echo RTT p99 without broadcasts (P99us is with).
	Reached    int64   `json:"reached,omitempty"`
	BcastP50ms float64 `json:"broadcast_p50_ms,omitempty"`
	BcastMaxMs float64 `json:"broadcast_max_ms,omitempty"`
	BaseP99us  float64 `json:"baseline_p99_us,omitempty"`

	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

type scenario struct {
	run func(ctx context.Context, o options) (*result, error)
	// defaults
	conns, inflight, size int
	deflate               string
}

var scenarios = map[string]scenario{
	"echo-small":     {run: runEcho, conns: 64, inflight: 1, size: 128},
	"echo-pipelined": {run: runEcho, conns: 64, inflight: 16, size: 128},
	"stream-large":   {run: runStream, conns: 4, size: 1 << 20},
	"handshake-rate": {run: runHandshake, conns: 16, size: 16},
	"idle-mem":       {run: runIdle, conns: 64, size: 16},
	"broadcast":      {run: runBroadcast, conns: 16, size: 128},
	// echo-small with compression: 1 KiB JSON-like text compressing about
	// 4:1, without context takeover (deflate.go).
	"echo-deflate": {run: runEcho, conns: 64, inflight: 1, size: 1024, deflate: deflateNoTakeover},
}

// errs counts errors and keeps the first one.
type errs struct {
	n     atomic.Int64
	mu    sync.Mutex
	first error
}

func (e *errs) add(err error) {
	if e.n.Add(1) == 1 {
		e.mu.Lock()
		e.first = err
		e.mu.Unlock()
	}
}

func (e *errs) fill(r *result) {
	r.Errors = e.n.Load()
	e.mu.Lock()
	if e.first != nil {
		r.FirstError = e.first.Error()
	}
	e.mu.Unlock()
}

// cpuProbe reads the gateway's CPU time at the edges of the window.
type cpuProbe struct {
	pids  []int
	start float64
}

func newProbe(pids []int) *cpuProbe { return &cpuProbe{pids: tree(pids)} }

func (p *cpuProbe) begin() {
	if len(p.pids) > 0 {
		p.start = cpuSeconds(p.pids)
	}
}

func (p *cpuProbe) end(r *result) {
	if len(p.pids) == 0 {
		return
	}
	r.GatewayCPUs = cpuSeconds(p.pids) - p.start
	if r.Ops > 0 {
		r.GatewayCPUPerOpUs = r.GatewayCPUs * 1e6 / float64(r.Ops)
	}
}

// sleepUntil waits for t or ctx.
func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

// dialAll opens n connections to path, 16 at a time.
func dialAll(ctx context.Context, cl *client, path string, n int) ([]*conn, error) {
	conns := make([]*conn, n)
	errc := make(chan error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			c, err := cl.dial(dctx, path)
			if err != nil {
				errc <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		for _, c := range conns {
			if c != nil {
				c.nc.Close()
			}
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	return conns, nil
}

// openConns opens the o.Conns connections of a closed-loop scenario to path;
// call stop when done (see abortOnCancel).
func openConns(ctx context.Context, o options, path string) (conns []*conn, stop func(), err error) {
	cl, err := newClient(o.URL, o.Sources, o.TLS)
	if err != nil {
		return nil, nil, err
	}
	if cl.deflate, err = deflateOffer(o.Deflate); err != nil {
		return nil, nil, err
	}
	if conns, err = dialAll(ctx, cl, path, o.Conns); err != nil {
		return nil, nil, err
	}
	return conns, abortOnCancel(ctx, conns), nil
}

// abortOnCancel closes conns if ctx ends first (a signal, or the run's
// overall time limit), which unblocks every worker; call the result to
// disarm it.
func abortOnCancel(ctx context.Context, conns []*conn) func() {
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.nc.Close()
		}
	})
	return func() { stop() }
}

// closeAll runs the close handshake on every connection at once.
func closeAll(conns []*conn) int {
	var clean atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.closeHandshake(5 * time.Second) {
				clean.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(clean.Load())
}

// textPayload is size bytes of printable ASCII, different per connection.
func textPayload(size, id int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = 'a' + byte((i+id)%26)
	}
	return p
}

// runEcho is echo-small (one message in flight per connection) and
// echo-pipelined (several): each connection is a closed loop of text
// messages and their echoes; RTT is measured per message.
func runEcho(ctx context.Context, o options) (*result, error) {
	conns, stop, err := openConns(ctx, o, "/echo")
	if err != nil {
		return nil, err
	}
	defer stop()
	// Built before the clock starts: compressing them is not the run's work.
	payloads := make([][]byte, len(conns))
	for i := range payloads {
		payloads[i] = messagePayload(o, i)
	}
	probe := newProbe(o.PIDs)
	start := time.Now()
	winStart := start.Add(o.Warmup)
	winEnd := winStart.Add(o.Duration)

	var e errs
	hists := make([]*hist, len(conns))
	counts := make([]int64, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		hists[i] = new(hist)
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := echoWorker(c, o.Inflight, payloads[i], winStart, winEnd, hists[i])
			counts[i] = n
			if err != nil {
				e.add(err)
			}
		}()
	}
	sleepUntil(ctx, winStart)
	probe.begin()
	sleepUntil(ctx, winEnd)
	r := &result{}
	wg.Wait()
	for i := range conns {
		r.Ops += counts[i]
	}
	probe.end(r)
	if clean := closeAll(conns); clean < len(conns) && e.n.Load() == 0 {
		e.add(fmt.Errorf("echo: %d of %d connections not closed cleanly", len(conns)-clean, len(conns)))
	}

	var h hist
	for _, x := range hists {
		h.merge(x)
	}
	r.DurationS = o.Duration.Seconds()
	r.Metric, r.Unit, r.Value = "msgs_per_s", "msg/s", float64(r.Ops)/r.DurationS
	r.P50us, r.P99us, r.P999us, r.MaxUs = us(h.quantile(0.50)), us(h.quantile(0.99)), us(h.quantile(0.999)), us(time.Duration(h.max))
	e.fill(r)
	return r, nil
}

// echoWorker keeps inflight messages outstanding on c until winEnd, then
// collects the last echoes. It counts and times the messages whose echo
// arrived inside [winStart, winEnd]. Replies already buffered are read
// together and their successors sent with one write, so a pipelined
// connection costs the client one system call per batch.
func echoWorker(c *conn, inflight int, payload []byte, winStart, winEnd time.Time, h *hist) (int64, error) {
	_ = c.nc.SetDeadline(winEnd.Add(10 * time.Second))
	defer c.nc.SetDeadline(time.Time{})
	sent := make([]time.Time, inflight) // ring of send times; echoes come back in order
	head, tail, out := 0, 0, 0
	replyLen := (&frame.Header{Length: int64(len(payload))}).Size() + len(payload)
	var wbuf []byte
	fill := func(now time.Time) error {
		wbuf = wbuf[:0]
		for out < inflight {
			wbuf = c.appendData(wbuf, payload)
			sent[tail] = now
			tail = (tail + 1) % inflight
			out++
		}
		if len(wbuf) == 0 {
			return nil
		}
		return c.write(wbuf)
	}
	if err := fill(time.Now()); err != nil {
		return 0, err
	}
	var n int64
	for out > 0 {
		for {
			op, p, _, err := c.readMessage()
			if err != nil {
				return n, err
			}
			now := time.Now()
			if op != frame.OpText || len(p) != len(payload) || string(p) != string(payload) {
				return n, errors.New("echo: reply differs from the message sent")
			}
			if !now.Before(winStart) && !now.After(winEnd) {
				h.record(now.Sub(sent[head]))
				n++
			}
			head = (head + 1) % inflight
			out--
			if out == 0 || c.br.Buffered() < replyLen {
				break
			}
		}
		if now := time.Now(); now.Before(winEnd) {
			if err := fill(now); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// runStream is stream-large: connections send binary messages one way to
// the sink as fast as they are taken. The window ends when the sink's
// reply to the final Close arrives, which it sends after reading every
// byte before it, so the rate is what was delivered, not what was buffered.
func runStream(ctx context.Context, o options) (*result, error) {
	conns, stop, err := openConns(ctx, o, "/sink")
	if err != nil {
		return nil, err
	}
	defer stop()
	probe := newProbe(o.PIDs)
	start := time.Now()
	winStart := start.Add(o.Warmup)
	winEnd := winStart.Add(o.Duration)

	var e errs
	bytesIn := make([]int64, len(conns))
	done := make([]time.Time, len(conns))
	clean := make([]bool, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := streamWorker(c, o.Size, winStart, winEnd)
			bytesIn[i] = n
			if err != nil {
				e.add(err)
				c.nc.Close()
				return
			}
			clean[i] = c.closeHandshake(10 * time.Second)
			done[i] = time.Now()
		}()
	}
	sleepUntil(ctx, winStart)
	probe.begin()
	wg.Wait()
	last := winEnd
	var total int64
	for i := range conns {
		total += bytesIn[i]
		if done[i].After(last) {
			last = done[i]
		}
		if !clean[i] && e.n.Load() == 0 {
			e.add(errors.New("stream: no Close reply from the sink"))
		}
	}
	r := &result{Ops: total / int64(o.Size)}
	probe.end(r)
	r.DurationS = last.Sub(winStart).Seconds()
	r.Metric, r.Unit, r.Value = "mb_per_s", "MB/s", float64(total)/1e6/r.DurationS
	e.fill(r)
	return r, nil
}

func streamWorker(c *conn, size int, winStart, winEnd time.Time) (int64, error) {
	_ = c.nc.SetWriteDeadline(winEnd.Add(30 * time.Second))
	payload := make([]byte, size)
	rng := rand.NewPCG(1, uint64(size))
	for i := 0; i+8 <= len(payload); i += 8 {
		v := rng.Uint64()
		for k := 0; k < 8; k++ {
			payload[i+k] = byte(v >> (8 * k))
		}
	}
	// The payload is masked once, with one random key per connection, and
	// sent as is every time. RFC 6455 §5.3 asks a client for a fresh key
	// per frame, to keep a hostile page from steering the bytes a cache
	// sees; that does not arise between a load generator and the proxy
	// under test, which cannot tell the difference and does the same work
	// either way, while re-masking 1 MiB per message would cost this client
	// about as much CPU as the relay it measures.
	h := frame.Header{Fin: true, Opcode: frame.OpBinary, Masked: true, Key: frame.NewKey(), Length: int64(size)}
	frame.Mask(h.Key, 0, payload)
	var hb [frame.MaxHeaderSize]byte
	hdr := hb[:frame.PutHeader(hb[:], h)]
	var n int64
	for {
		now := time.Now()
		if !now.Before(winEnd) {
			return n, nil
		}
		bufs := net.Buffers{hdr, payload}
		c.wmu.Lock()
		_, err := bufs.WriteTo(c.nc)
		c.wmu.Unlock()
		if err != nil {
			return n, err
		}
		if !now.Before(winStart) {
			n += int64(size)
		}
	}
}

// runHandshake is handshake-rate: dialers each open a session, exchange
// one message, close it properly, and start over. Connect time is TCP
// connect plus the upgrade, until the 101 is verified.
func runHandshake(ctx context.Context, o options) (*result, error) {
	cl, err := newClient(o.URL, o.Sources, o.TLS)
	if err != nil {
		return nil, err
	}
	probe := newProbe(o.PIDs)
	start := time.Now()
	winStart := start.Add(o.Warmup)
	winEnd := winStart.Add(o.Duration)
	var e errs
	hists := make([]*hist, o.Conns)
	counts := make([]int64, o.Conns)
	var wg sync.WaitGroup
	for i := range o.Conns {
		hists[i] = new(hist)
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := textPayload(o.Size, i)
			for {
				t0 := time.Now()
				if !t0.Before(winEnd) || ctx.Err() != nil {
					return
				}
				connect, err := oneSession(ctx, cl, payload)
				if err != nil {
					e.add(err)
					time.Sleep(10 * time.Millisecond) // no busy loop on a refusing target
					continue
				}
				if t1 := time.Now(); !t0.Before(winStart) && !t1.After(winEnd) {
					hists[i].record(connect)
					counts[i]++
				}
			}
		}()
	}
	sleepUntil(ctx, winStart)
	probe.begin()
	sleepUntil(ctx, winEnd)
	wg.Wait()
	r := &result{}
	var h hist
	for i := range hists {
		h.merge(hists[i])
		r.Ops += counts[i]
	}
	probe.end(r)
	r.DurationS = o.Duration.Seconds()
	r.Metric, r.Unit, r.Value = "sessions_per_s", "sessions/s", float64(r.Ops)/r.DurationS
	r.P50us, r.P99us, r.P999us, r.MaxUs = us(h.quantile(0.50)), us(h.quantile(0.99)), us(h.quantile(0.999)), us(time.Duration(h.max))
	e.fill(r)
	return r, nil
}

func oneSession(ctx context.Context, cl *client, payload []byte) (time.Duration, error) {
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := cl.dial(dctx, "/echo")
	cancel()
	if err != nil {
		return 0, err
	}
	connect := time.Since(t0)
	_ = c.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.send(frame.OpText, payload); err != nil {
		c.nc.Close()
		return 0, err
	}
	if _, p, _, err := c.readMessage(); err != nil || len(p) != len(payload) {
		c.nc.Close()
		if err == nil {
			err = errors.New("handshake-rate: wrong echo")
		}
		return 0, err
	}
	if !c.closeHandshake(5 * time.Second) {
		return 0, errors.New("handshake-rate: no Close reply")
	}
	return connect, nil
}

// runIdle is idle-mem: it opens Sessions sessions (each exchanges one
// message, so every proxy has set up whatever it sets up on first data),
// lets them sit, reads the gateway's RSS, then closes them all properly.
// Each session keeps one goroutine blocked in a read, which answers the
// gateway's keepalive pings if any arrive.
func runIdle(ctx context.Context, o options) (*result, error) {
	cl, err := newClient(o.URL, o.Sources, o.TLS)
	if err != nil {
		return nil, err
	}
	if cl.deflate, err = deflateOffer(o.Deflate); err != nil {
		return nil, err
	}
	pids := tree(o.PIDs)
	r := &result{Sessions: o.Sessions}
	r.RSSBeforeKiB = rssKiB(pids)
	probe := &cpuProbe{pids: pids}
	probe.begin()

	var e errs
	var (
		mu      sync.Mutex
		conns   = make([]*conn, 0, o.Sessions)
		next    atomic.Int64
		early   atomic.Int64
		clean   atomic.Int64
		closing atomic.Bool
		held    sync.WaitGroup
		dialWG  sync.WaitGroup
	)
	t0 := time.Now()
	for i := range o.Conns {
		dialWG.Add(1)
		go func() {
			defer dialWG.Done()
			payload := messagePayload(o, i)
			for next.Add(1) <= int64(o.Sessions) && ctx.Err() == nil {
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				c, err := cl.dial(dctx, "/echo")
				cancel()
				if err != nil {
					e.add(err)
					continue
				}
				_ = c.nc.SetDeadline(time.Now().Add(10 * time.Second))
				err = c.sendData(payload)
				if err == nil {
					_, _, _, err = c.readMessage()
				}
				if err != nil {
					e.add(err)
					c.nc.Close()
					continue
				}
				_ = c.nc.SetDeadline(time.Time{})
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				held.Add(1)
				go func() {
					defer held.Done()
					defer c.nc.Close()
					for {
						_, _, _, err := c.readMessage()
						if err == nil {
							continue
						}
						if errors.Is(err, errClosed) && closing.Load() {
							clean.Add(1)
							_, _ = io.Copy(io.Discard, c.br) // until the server's FIN
						} else {
							early.Add(1)
						}
						return
					}
				}()
			}
		}()
	}
	dialWG.Wait()
	r.OpenS = time.Since(t0).Seconds()
	r.Opened = len(conns)

	sleepUntil(ctx, time.Now().Add(o.Settle))
	r.RSSAfterKiB = rssKiB(tree(o.PIDs))
	if r.Opened > 0 && len(pids) > 0 {
		r.KiBPerSession = float64(r.RSSAfterKiB-r.RSSBeforeKiB) / float64(r.Opened)
	}

	t1 := time.Now()
	closing.Store(true)
	deadline := time.Now().Add(30 * time.Second)
	closePayload := frame.AppendClose(nil, frame.CloseNormal, "")
	var cb [16]byte
	for _, c := range conns {
		_ = c.nc.SetDeadline(deadline)
		if err := c.write(appendMasked(cb[:0], frame.OpClose, closePayload)); err != nil {
			e.add(err)
		}
	}
	held.Wait()
	r.CloseS = time.Since(t1).Seconds()
	r.ClosedClean = int(clean.Load())
	r.ClosedEarly = early.Load()
	if r.ClosedClean < r.Opened {
		e.add(fmt.Errorf("idle-mem: %d of %d sessions not closed cleanly (%d closed before the end)", r.Opened-r.ClosedClean, r.Opened, r.ClosedEarly))
	}
	r.Ops = int64(r.Opened)
	probe.end(r)
	r.DurationS = time.Since(t0).Seconds()
	r.Metric, r.Unit = "kib_per_session", "KiB/session"
	r.Value = r.KiBPerSession
	if len(pids) == 0 {
		// No gateway process to weigh (direct): the headline is how fast
		// the sessions were opened.
		r.Metric, r.Unit, r.Value = "open_per_s", "sessions/s", float64(r.Opened)/r.OpenS
	}
	e.fill(r)
	return r, nil
}

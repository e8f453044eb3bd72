package events

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Results a job ends with.
const (
	ResultOK      = "ok"
	ResultFailed  = "failed"  // every attempt failed
	ResultDropped = "dropped" // the pending jobs were at Max (or the sender closed)
)

// Defaults for Options.
const (
	DefaultMax     = 10000
	DefaultWorkers = 8
	// Retries is how many times a failed attempt is retried.
	Retries = 3
)

// Options configure a Sender. The zero value works.
type Options struct {
	Max     int          // pending jobs at most; 0 = DefaultMax
	Workers int          // concurrent posts; 0 = DefaultWorkers
	Client  *http.Client // nil: a client of its own
	// Backoff is the wait before the first retry; each next one doubles
	// it. 0 = 1 s. Tests shorten it.
	Backoff time.Duration
	// Result is called once per job with its outcome; may be nil.
	Result func(j *Job, result string)
}

// Job is one event to post.
type Job struct {
	URL     string
	Timeout time.Duration // per attempt; 0 = none
	Body    []byte        // JSON
	// Route and Event label the job's result (metrics).
	Route, Event string

	attempts int
	prev     *Job // set by After, until Send
	mu       sync.Mutex
	done     bool
	next     *Job // a job waiting for this one
}

// After makes j wait for prev to finish before it is posted. Call it
// before Send(j); prev may be nil.
func (j *Job) After(prev *Job) { j.prev = prev }

// Sender posts jobs; see the package doc.
type Sender struct {
	opt     Options
	queue   chan *Job
	pending atomic.Int64
	closed  atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New starts a sender's workers. Close stops them.
func New(opt Options) *Sender {
	if opt.Max <= 0 {
		opt.Max = DefaultMax
	}
	if opt.Workers <= 0 {
		opt.Workers = DefaultWorkers
	}
	if opt.Backoff <= 0 {
		opt.Backoff = time.Second
	}
	if opt.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = opt.Workers
		opt.Client = &http.Client{Transport: tr}
	}
	s := &Sender{opt: opt, queue: make(chan *Job, opt.Max)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for range opt.Workers {
		s.wg.Go(s.work)
	}
	return s
}

// Pending is the number of jobs not finished yet.
func (s *Sender) Pending() int { return int(s.pending.Load()) }

// Send queues j, or drops it (reporting ResultDropped) when Max jobs are
// pending or the sender is closed. It reports whether j was taken.
func (s *Sender) Send(j *Job) bool {
	prev := j.prev
	j.prev = nil
	if s.closed.Load() {
		s.finishDropped(j)
		return false
	}
	// Take a slot only if there is one: pending never reads above Max,
	// even for a moment (an add-then-undo would show Max+1).
	for {
		p := s.pending.Load()
		if p >= int64(s.opt.Max) {
			s.finishDropped(j)
			return false
		}
		if s.pending.CompareAndSwap(p, p+1) {
			break
		}
	}
	if prev != nil {
		prev.mu.Lock()
		if !prev.done {
			prev.next = j // posted when prev finishes
			prev.mu.Unlock()
			return true
		}
		prev.mu.Unlock()
	}
	s.queue <- j // never blocks: at most Max are pending, the queue holds Max
	return true
}

// finishDropped ends a job that was never taken.
func (s *Sender) finishDropped(j *Job) {
	j.mu.Lock()
	j.done = true
	j.mu.Unlock()
	s.report(j, ResultDropped)
}

func (s *Sender) report(j *Job, result string) {
	if s.opt.Result != nil {
		s.opt.Result(j, result)
	}
}

// finish ends a taken job and releases the one waiting for it, if any.
func (s *Sender) finish(j *Job, result string) {
	j.mu.Lock()
	j.done = true
	next := j.next
	j.next = nil
	j.mu.Unlock()
	s.report(j, result)
	j.Body = nil // the job may be kept (After) long after it is done
	s.pending.Add(-1)
	if next != nil {
		if s.ctx.Err() != nil {
			s.finish(next, ResultDropped)
			return
		}
		s.queue <- next
	}
}

func (s *Sender) work() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case j := <-s.queue:
			s.attempt(j)
		}
	}
}

// attempt posts j once; a failure is retried after a back-off, from a timer.
func (s *Sender) attempt(j *Job) {
	if s.post(j) {
		s.finish(j, ResultOK)
		return
	}
	j.attempts++
	if j.attempts > Retries || s.ctx.Err() != nil {
		s.finish(j, ResultFailed)
		return
	}
	wait := s.opt.Backoff << (j.attempts - 1)
	wait += time.Duration(rand.Int64N(int64(wait/4) + 1))
	time.AfterFunc(wait, func() {
		if s.ctx.Err() != nil {
			s.finish(j, ResultFailed)
			return
		}
		s.queue <- j
	})
}

func (s *Sender) post(j *Job) bool {
	ctx := s.ctx
	if j.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, j.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.URL, bytes.NewReader(j.Body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wsgate-events")
	resp, err := s.opt.Client.Do(req)
	if err != nil {
		return false
	}
	// Read a little of the body so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

// Close stops taking jobs and waits, until ctx is done, for the pending
// ones to finish; then stops the workers. Jobs still pending are lost
// (their results are not reported). It returns how many were lost.
func (s *Sender) Close(ctx context.Context) int {
	s.closed.Store(true)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			n := int(s.pending.Load())
			s.cancel()
			s.wg.Wait()
			return n
		case <-tick.C:
		}
	}
	s.cancel()
	s.wg.Wait()
	return 0
}

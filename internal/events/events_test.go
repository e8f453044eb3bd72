package events

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// results collects the results a sender reports.
type results struct {
	mu sync.Mutex
	m  map[string]int
}

func (r *results) add(_ *Job, res string) {
	r.mu.Lock()
	r.m[res]++
	r.mu.Unlock()
}

func (r *results) get(res string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[res]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestSenderDeliversInOrderPerChain(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	failed := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		// The first attempt of every "a" event fails: its "b" must
		// still come after it.
		mu.Lock()
		first := b[0] == 'a' && !failed[string(b)]
		failed[string(b)] = true
		mu.Unlock()
		if first {
			w.WriteHeader(503)
			return
		}
		if r.Header.Get("Content-Type") != "application/json" || r.Method != "POST" {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	}))
	defer srv.Close()
	res := &results{m: map[string]int{}}
	s := New(Options{Backoff: 5 * time.Millisecond, Result: res.add})
	const n = 50
	for i := range n {
		a := &Job{URL: srv.URL, Body: []byte("a" + strconv.Itoa(i)), Timeout: time.Second}
		s.Send(a)
		b := &Job{URL: srv.URL, Body: []byte("b" + strconv.Itoa(i)), Timeout: time.Second}
		b.After(a)
		s.Send(b)
	}
	waitFor(t, "every result", func() bool { return res.get(ResultOK) == 2*n })
	mu.Lock()
	pos := map[string]int{}
	for i, g := range got {
		pos[g] = i
	}
	mu.Unlock()
	for i := range n {
		pa, oka := pos["a"+strconv.Itoa(i)]
		pb, okb := pos["b"+strconv.Itoa(i)]
		if !oka || !okb || pb < pa {
			t.Errorf("event %d: a at %d (%v), b at %d (%v): b must follow a", i, pa, oka, pb, okb)
		}
	}
	if s.Pending() != 0 {
		t.Errorf("pending %d", s.Pending())
	}
	if lost := s.Close(context.Background()); lost != 0 {
		t.Errorf("Close lost %d", lost)
	}
}

func TestSenderRetriesThenGivesUp(t *testing.T) {
	t.Parallel()
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		w.WriteHeader(500)
	}))
	defer srv.Close()
	res := &results{m: map[string]int{}}
	s := New(Options{Backoff: time.Millisecond, Result: res.add})
	defer s.Close(context.Background())
	s.Send(&Job{URL: srv.URL, Body: []byte("{}")})
	waitFor(t, "the job to fail", func() bool { return res.get(ResultFailed) == 1 })
	if a := attempts.Load(); a != 1+Retries {
		t.Errorf("%d attempts, want %d", a, 1+Retries)
	}
}

// TestSenderBounded: with a receiver that never answers, no more than Max
// jobs are ever pending; the rest are dropped, and every job has exactly
// one result.
func TestSenderBounded(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	res := &results{m: map[string]int{}}
	const max = 10
	s := New(Options{Max: max, Workers: 2, Backoff: time.Millisecond, Result: res.add})
	taken := 0
	for i := range 1000 {
		if s.Send(&Job{URL: srv.URL, Body: []byte(strconv.Itoa(i)), Timeout: 100 * time.Millisecond}) {
			taken++
		}
		if p := s.Pending(); p > max {
			t.Fatalf("%d pending, over Max %d", p, max)
		}
	}
	if taken != max || res.get(ResultDropped) != 1000-max {
		t.Errorf("taken %d, dropped %d: want %d and %d", taken, res.get(ResultDropped), max, 1000-max)
	}
	waitFor(t, "the taken jobs to fail", func() bool { return res.get(ResultFailed) == max })
	if s.Pending() != 0 {
		t.Errorf("pending %d", s.Pending())
	}
	// Room again once they are done.
	if !s.Send(&Job{URL: srv.URL, Timeout: time.Millisecond}) {
		t.Error("a job was refused with nothing pending")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	s.Close(ctx)
	if s.Send(&Job{URL: srv.URL}) {
		t.Error("a closed sender took a job")
	}
}

package listen

// Running out of file descriptors (issue 12). A session holds two
// descriptors (the client's connection and the upstream's), so the
// process's RLIMIT_NOFILE bounds how many sessions it can hold whatever
// server.max_connections says. At the limit:
//
//   - the WebSocket and admin listeners back off (pacedListener): accept(2)
//     fails with EMFILE at once, pending connection or not, so retrying
//     without a pause would spin a core. The connections that arrive
//     meanwhile wait in the kernel's backlog and are accepted as soon as a
//     descriptor is free again;
//   - a handshake whose upstream dial finds no descriptor is answered 503
//     (upstreamFailed), and the upstream is not blamed for it;
//   - both are logged at most once per fdLogEvery, with the count of the
//     repeats in between (fdAlarm): at the limit they happen constantly.
//
// Nothing is counted in a new metric: docs/operations.md "Metrics" fixes the metric names. The
// dial failures are in wsgate_handshake_rejected_total{status="503"}, and
// the process collector's process_open_fds and process_max_fds show how
// close the process is to its limit.

import (
	"errors"
	"math"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

const (
	// fdsPerSession: the client's connection and the upstream's (a
	// builtin:echo upstream needs none, but the limit is checked for the
	// worst case).
	fdsPerSession = 2
	// fdHeadroom: descriptors kept aside for the listeners, the admin
	// server's connections, the logs and the runtime.
	fdHeadroom = 64
	// fdLogEvery: at most one "out of file descriptors" line per kind in
	// this time.
	fdLogEvery = 10 * time.Second
	// Accept back-off at the limit: doubling from acceptBackoffMin up to
	// acceptBackoffMax (net/http's own schedule for temporary errors).
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// SessionCapacity is how many sessions an open-file limit of nofile
// descriptors can hold (0 if not even the headroom fits).
func SessionCapacity(nofile uint64) int64 {
	if nofile <= fdHeadroom {
		return 0
	}
	return int64(min((nofile-fdHeadroom)/fdsPerSession, math.MaxInt64))
}

// FDLimitShort reports whether an open-file limit of nofile descriptors
// cannot hold maxConns sessions (server.max_connections; 0 = unlimited,
// which no limit can hold), and how many it can.
func FDLimitShort(nofile uint64, maxConns int) (capacity int64, short bool) {
	capacity = SessionCapacity(nofile)
	return capacity, maxConns <= 0 || int64(maxConns) > capacity
}

// WarnOpenFileLimit logs one warning when the process's open-file limit
// (RLIMIT_NOFILE's soft limit) cannot hold maxConns sessions. It does not
// raise the limit itself: on Linux, Go's syscall package already raised the
// soft limit to (one below) the hard limit when the process started.
func WarnOpenFileLimit(log zerolog.Logger, maxConns int) {
	soft, hard, ok := openFileLimit()
	if !ok {
		return
	}
	capacity, short := FDLimitShort(soft, maxConns)
	if !short {
		return
	}
	e := log.Warn().Str("event", "open_file_limit").Uint64("open_files_limit", soft).Uint64("open_files_hard_limit", hard).
		Int("max_connections", maxConns).Int64("sessions_capacity", capacity).
		Int("fds_per_session", fdsPerSession).Int("fd_headroom", fdHeadroom)
	if maxConns <= 0 {
		e.Msg("max_connections is unlimited: the open-file limit holds about sessions_capacity sessions; beyond them, handshakes get 503 or wait to be accepted")
	} else {
		e.Msg("the open-file limit cannot hold max_connections sessions: beyond sessions_capacity, handshakes get 503 or wait to be accepted; raise LimitNOFILE / ulimit -n or lower max_connections")
	}
}

// OutOfFDs reports whether err says the process (EMFILE) or the system
// (ENFILE) has no descriptor left.
func OutOfFDs(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// fdAlarm logs one kind of "out of file descriptors" event at most once per
// fdLogEvery; the line carries how many were left unlogged since the last.
type fdAlarm struct {
	mu         sync.Mutex
	last       time.Time // of the last line; zero: never
	suppressed int64
}

// fire records one event at now. It returns whether to log it, and how
// many events went unlogged before it.
func (a *fdAlarm) fire(now time.Time) (log bool, suppressed int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.last.IsZero() && now.Sub(a.last) < fdLogEvery {
		a.suppressed++
		return false, 0
	}
	a.last, suppressed, a.suppressed = now, a.suppressed, 0
	return true, suppressed
}

// fdAlarms are a gateway's rate-limited "out of file descriptors" lines.
type fdAlarms struct {
	accept fdAlarm // a listener's accept(2)
	dial   fdAlarm // an upstream dial
}

// acceptOutOfFDs logs (rate-limited) that ln's accept found no descriptor.
func (g *Gate) acceptOutOfFDs(ln net.Listener, err error, backoff time.Duration) {
	ok, n := g.fdLog.accept.fire(time.Now())
	if !ok {
		return
	}
	soft, _, _ := openFileLimit()
	g.Log.Warn().Str("event", "out_of_fds").Str("where", "accept").Str("listen", ln.Addr().String()).Err(err).
		Uint64("open_files_limit", soft).Dur("retry_in", backoff).Int64("suppressed", n).Dur("interval", fdLogEvery).
		Msg("out of file descriptors: new connections wait in the backlog until sessions end (suppressed: repeats since the last such line)")
}

// DialOutOfFDs logs (rate-limited) that an upstream dial of route found no
// descriptor; the handshake is answered 503.
func (g *Gate) DialOutOfFDs(route string, err error) {
	ok, n := g.fdLog.dial.fire(time.Now())
	if !ok {
		return
	}
	soft, _, _ := openFileLimit()
	g.Log.Warn().Str("event", "out_of_fds").Str("where", "upstream_dial").Str("route", route).Err(err).
		Uint64("open_files_limit", soft).Int64("suppressed", n).Dur("interval", fdLogEvery).
		Msg("out of file descriptors: handshakes answered 503 until sessions end (suppressed: repeats since the last such line)")
}

// pacedListener is a listener whose Accept, when the process is out of
// descriptors, waits and tries again (doubling the wait from
// acceptBackoffMin to acceptBackoffMax) instead of returning the error:
// net/http's Server would retry too, but log every attempt. Close ends a
// wait at once.
type pacedListener struct {
	net.Listener
	g      *Gate
	closed chan struct{}
	once   sync.Once
}

// Paced wraps ln's Accept with the back-off for when the process is out of
// descriptors (the admin listener takes it alone).
func (g *Gate) Paced(ln net.Listener) net.Listener { return g.paced(ln) }

func (g *Gate) paced(ln net.Listener) *pacedListener {
	return &pacedListener{Listener: ln, g: g, closed: make(chan struct{})}
}

func (l *pacedListener) Accept() (net.Conn, error) {
	var delay time.Duration // reset by every accepted connection: each call starts afresh
	for {
		c, err := l.Listener.Accept()
		if err == nil || !OutOfFDs(err) {
			return c, err
		}
		delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
		l.g.acceptOutOfFDs(l.Listener, err, delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			// The listener is closed: its Accept now says so.
		}
	}
}

func (l *pacedListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

var _ net.Listener = (*pacedListener)(nil)

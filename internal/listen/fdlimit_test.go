package listen

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"wsgate/internal/testutil"

	"github.com/rs/zerolog"
)

// TestFDLimitShort: a session needs 2 descriptors on top of 64 kept aside;
// max_connections 0 (unlimited) is never held.
func TestFDLimitShort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		nofile   uint64
		maxConns int
		capacity int64
		short    bool
	}{
		{0, 0, 0, true},
		{64, 1, 0, true},
		{65, 1, 0, true},
		{66, 1, 1, false},
		{1024, 480, 480, false},
		{1024, 481, 480, true},
		{1024, 0, 480, true},
		{20000, 9000, 9968, false},
		{20000, 10000, 9968, true},
		{20000, 0, 9968, true},
		{1 << 20, 100000, 524256, false},
		{^uint64(0), 0, math.MaxInt64 - 32, true}, // RLIM_INFINITY: still not "unlimited"
		{^uint64(0), 1 << 40, math.MaxInt64 - 32, false},
	}
	for _, tt := range tests {
		capacity, short := FDLimitShort(tt.nofile, tt.maxConns)
		if capacity != tt.capacity || short != tt.short {
			t.Errorf("FDLimitShort(%d, %d) = %d, %v; want %d, %v", tt.nofile, tt.maxConns, capacity, short, tt.capacity, tt.short)
		}
	}
}

// TestWarnOpenFileLimit: one warning line naming the numbers when the
// limit is short, none when it is not.
func TestWarnOpenFileLimit(t *testing.T) {
	t.Parallel()
	soft, hard, ok := openFileLimit()
	if !ok {
		t.Skip("no RLIMIT_NOFILE here")
	}
	var buf testutil.LogBuffer
	WarnOpenFileLimit(zerolog.New(&buf), 0)
	lines := buf.Lines(`"level":"warn"`, `"event":"open_file_limit"`)
	capacity := SessionCapacity(soft)
	want := []string{fmt.Sprintf(`"open_files_limit":%d`, soft), fmt.Sprintf(`"open_files_hard_limit":%d`, hard),
		`"max_connections":0`, fmt.Sprintf(`"sessions_capacity":%d`, capacity)}
	if len(lines) != 1 || !containsAll(lines[0], want) {
		t.Errorf("unlimited max_connections: logged %q, want one warning with %q", buf.String(), want)
	}
	if capacity > 0 {
		buf = testutil.LogBuffer{}
		WarnOpenFileLimit(zerolog.New(&buf), int(capacity))
		if buf.String() != "" {
			t.Errorf("max_connections %d fits the limit %d, but logged %q", capacity, soft, buf.String())
		}
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestFDAlarmRateLimits: at most one line per fdLogEvery, and the line
// after a quiet spell counts the events it did not log.
func TestFDAlarmRateLimits(t *testing.T) {
	t.Parallel()
	var a fdAlarm
	t0 := time.Now()
	if ok, n := a.fire(t0); !ok || n != 0 {
		t.Fatalf("first event: log %v, suppressed %d", ok, n)
	}
	for i := 1; i <= 999; i++ {
		if ok, _ := a.fire(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			t.Fatalf("event %d, %dms after a logged one, was logged", i, i)
		}
	}
	if ok, n := a.fire(t0.Add(fdLogEvery)); !ok || n != 999 {
		t.Errorf("event after fdLogEvery: log %v, suppressed %d; want true, 999", ok, n)
	}
	if ok, _ := a.fire(t0.Add(fdLogEvery + time.Second)); ok {
		t.Errorf("logged again 1s after the last line")
	}
}

// emfileListener fails its first fails accepts with EMFILE, then hands
// out conns; Close makes Accept return net.ErrClosed.
type emfileListener struct {
	fails  int64
	calls  atomic.Int64
	closed atomic.Bool
	conn   net.Conn
}

func (l *emfileListener) Accept() (net.Conn, error) {
	n := l.calls.Add(1)
	if l.closed.Load() {
		return nil, net.ErrClosed
	}
	if n <= l.fails {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.conn, nil
}

func (l *emfileListener) Close() error {
	l.closed.Store(true)
	return nil
}

func (l *emfileListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// TestPacedListenerBacksOff: out of descriptors, Accept waits 5ms, 10ms,
// 20ms… between attempts (not a busy loop), logs once, and returns the
// connection that comes next; Close ends a wait at once.
func TestPacedListenerBacksOff(t *testing.T) {
	t.Parallel()
	var logs testutil.LogBuffer
	g := &Gate{Log: zerolog.New(&logs)}
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	inner := &emfileListener{fails: 6, conn: c1}
	ln := g.paced(inner)
	t0 := time.Now()
	c, err := ln.Accept()
	took := time.Since(t0)
	if err != nil || c != c1 {
		t.Fatalf("Accept = %v, %v; want the connection after the failures", c, err)
	}
	// 5+10+20+40+80+160ms of back-off.
	if want := 315 * time.Millisecond; took < want || took > want+2*time.Second {
		t.Errorf("6 EMFILE took %v to get past, want about %v", took, want)
	}
	if n := inner.calls.Load(); n != 7 {
		t.Errorf("%d accept calls, want 7", n)
	}
	if l := logs.Lines(`"event":"out_of_fds"`, `"where":"accept"`, `"listen":"127.0.0.1:1"`); len(l) != 1 {
		t.Errorf("logged %q, want one out_of_fds line", logs.String())
	}

	// Failing for ever: the back-off reaches 1s; Close ends it at once.
	inner = &emfileListener{fails: 1 << 62}
	ln = g.paced(inner)
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	time.Sleep(2500 * time.Millisecond) // 5ms … 640ms, then 1s waits
	calls := inner.calls.Load()
	if calls < 8 || calls > 10 {
		t.Errorf("%d accept attempts in 2.5s out of descriptors, want 8 to 10 (5ms doubling to 1s)", calls)
	}
	t1 := time.Now()
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
		if d := time.Since(t1); d > 200*time.Millisecond {
			t.Errorf("Accept returned %v after Close", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still waiting 2s after Close")
	}
	if l := logs.Lines(`"event":"out_of_fds"`); len(l) != 1 {
		t.Errorf("%d out_of_fds lines, want 1 (rate-limited, shared by the gateway's listeners)", len(l))
	}
}

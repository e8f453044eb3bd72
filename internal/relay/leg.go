package relay

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"wsgate/frame"
)

// Side names a leg of a session.
type Side uint8

const (
	SideClient Side = iota
	SideUpstream
)

func (s Side) String() string {
	if s == SideClient {
		return "client"
	}
	return "upstream"
}

// leg is one of a session's two connections. Its reading half is owned by
// the pump goroutine that reads it; its writing half is shared (the other
// pump relays into it, keepalive pings and closes are written to it) and is
// serialised by wmu, always at frame boundaries.
type leg struct {
	conn  net.Conn
	br    *bufio.Reader
	rules frame.Rules
	msg   frame.Message

	// Write side, guarded by wmu.
	wmu       sync.Mutex
	wdeadline int64       // the write deadline set on conn, since session start
	sentClose atomic.Bool // a Close frame is being written: nothing more may follow it
	closeOut  atomic.Bool // that Close frame's write is over (done or failed): the leg may be half-closed
	dead      atomic.Bool // the conn is closed or broken: nothing can be written
	sentCode  frame.CloseCode
	sentWhy   string
	sentAny   bool
	side      Side // here, not first: it fills the padding after sentAny

	// lost is set once the leg's end has been handled (gone ran, or the
	// gateway cut it). It is not dead: a failed write marks a leg dead
	// first, and gone must still run for it.
	lost atomic.Bool
	cut  atomic.Bool // the gateway closed it inside a frame (truncated)

	// Read side, owned by the pump reading this leg, published to the other
	// pump through the atomics.
	recvClose     atomic.Bool
	recvCode      frame.CloseCode
	recvWhy       string
	closeDeadline atomic.Int64  // since session start; 0 = not closing
	abrupt        bool          // its Close was invalid: close without waiting for its FIN
	eof           bool          // its peer's FIN was read (discard): nothing can be left unread
	wclosed       bool          // closeWrite ran (the reading pump calls it, before finish)
	gen           atomic.Uint32 // bumped by wake, so rearm never loses one
	lastRead      int64         // since session start: any frame
	pingSent      int64         // since session start: 0 = no keepalive ping outstanding
	token         [8]byte       // payload of our keepalive pings on this leg
	// wakec cuts a rate-limit throttle wait short (the pump is not in a
	// read then, so a read deadline cannot wake it). Only a throttled
	// client leg has one.
	wakec chan struct{}

	// dfl is the permessage-deflate state of what this leg sends (nil:
	// not negotiated); owned by this leg's pump (deflate.go).
	dfl *inflState

	// pend holds small frames read from this leg and not yet written to the
	// other one (see session.emit); owned by this leg's pump.
	pend *[]byte

	// Parking (see park.go). A leg parks only over TCP (canPark).
	s       *Session
	parked  atomic.Bool
	pmu     sync.Mutex // orders a park against the resumed pump's next one
	armed   bool       // registered with the poller (under pmu)
	canPark bool       // there is a TCP connection under conn (set by attach)
	fd      int32      // the descriptor registered (under pmu)
	pidx    int32      // its place in the poller's timer heap + 1; 0: none (under the poller's mu)
	pdue    int64      // its timer's deadline, the poller's clock (under the poller's mu)
	resumed int64      // since session start: the poller last resumed it

	// Tallies of what was read from this leg.
	// Atomics because /metrics reads them while the pump writes them;
	// each is written by one goroutine only, so they cost no contention.
	frames, messages, bytes atomic.Int64
}

// errLegDead is returned by writes to a leg that is already closed.
var errLegDead = errors.New("wsgate: leg closed")

// lockWrite takes the write lock. It reports false (and releases the lock) if
// nothing may be written any more: a Close was already sent, or the conn died.
func (l *leg) lockWrite() bool {
	l.wmu.Lock()
	if l.sentClose.Load() || l.dead.Load() {
		l.wmu.Unlock()
		return false
	}
	return true
}

// writeLocked writes b with the write timeout; the caller holds wmu. A write
// that fails marks the leg dead: the peer stopped reading (RFC 6455 gives no
// way to recover a half-written frame).
func (l *leg) writeLocked(b []byte, timeout time.Duration, now time.Time) error {
	// Refresh the deadline only when it has drifted: a deadline change costs a
	// timer update, and a frame stream would otherwise pay it on every write.
	if timeout > 0 {
		if t := int64(now.Sub(l.s.start)); l.wdeadline-t < int64(timeout-timeout/8) {
			l.wdeadline = t + int64(timeout)
			_ = l.conn.SetWriteDeadline(now.Add(timeout))
		}
	}
	_, err := l.conn.Write(b)
	if err != nil {
		l.dead.Store(true)
	}
	return err
}

// writeChunk writes a chunk of a streamed frame (up to streamChunk bytes).
// write_timeout bounds how long l takes no data at all, as it does for a
// small frame (docs/relay.md: a peer that does not take a write within
// write_timeout is gone; a slow reader slows its sender): not how long l
// takes to read the whole chunk, which a reader that is slow but reading
// may need longer for. So the write runs under short deadlines, and gives
// up only when timeout has passed since the last one in which l took any
// of it. The caller holds wmu.
func (l *leg) writeChunk(b []byte, timeout time.Duration) error {
	if timeout <= 0 {
		return l.writeLocked(b, 0, time.Now())
	}
	if _, ok := l.conn.(*tls.Conn); ok {
		// After a write timeout a TLS connection is broken for good, so
		// it cannot go on after a short deadline: hand it one record's
		// worth at a time, each under writeLocked's deadline (TLS writes
		// a record per system call either way).
		for len(b) > 0 {
			n := min(len(b), tlsRecordPayload)
			if err := l.writeLocked(b[:n], timeout, time.Now()); err != nil {
				return err
			}
			b = b[n:]
		}
		return nil
	}
	step := timeout / 8
	took := time.Now() // when l last took some of b
	for {
		// writeLocked's next call sees this deadline as drifted and
		// sets a full one.
		now := time.Now()
		l.wdeadline = int64(now.Sub(l.s.start) + step)
		_ = l.conn.SetWriteDeadline(now.Add(step))
		n, err := l.conn.Write(b)
		b = b[n:]
		if err == nil {
			return nil
		}
		if isTimeout(err) {
			now := time.Now()
			if n > 0 {
				took = now
				continue
			}
			if now.Sub(took) < timeout {
				continue
			}
		}
		l.dead.Store(true)
		return err
	}
}

// tlsRecordPayload is the most plaintext one TLS record carries.
const tlsRecordPayload = 16 << 10

// wake makes the pump reading this leg re-examine the session state now.
func (l *leg) wake() {
	l.gen.Add(1)
	_ = l.conn.SetReadDeadline(time.Unix(1, 0))
	l.kick()
}

// kick ends a throttle wait of the pump reading this leg, if any, or
// resumes its pump if it is parked.
func (l *leg) kick() {
	l.unpark(false)
	if l.wakec != nil {
		select {
		case l.wakec <- struct{}{}:
		default:
		}
	}
}

// closeWrite half-closes the leg's conn when it can (TCP, TLS), so the peer
// sees our FIN while we keep reading what it still sends.
func (l *leg) closeWrite() {
	type closeWriter interface{ CloseWrite() error }
	if l.wclosed {
		return
	}
	l.wclosed = true
	if cw, ok := l.conn.(closeWriter); ok {
		_ = cw.CloseWrite()
	}
}

// closeNow closes the leg's TCP connection beneath any TLS or PROXY layer.
// tls.Conn.Close first sends a close_notify alert under its own 5 s write
// deadline, which blocks for that long toward a peer that stopped reading:
// a leg that is gone or cut gets none. (finish still calls conn.Close,
// which then fails at once.)
func (l *leg) closeNow() { closeBeneath(l.conn) }

// closeBeneath closes the innermost connection under c's wrappers.
func closeBeneath(c net.Conn) {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	_ = c.Close()
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

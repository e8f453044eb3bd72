package relay

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"wsgate/frame"
)

// Pushed messages (README "Sessions API and events"): a message the gateway
// itself sends to a session's client, on behalf of a backend that called
// the admin API.
//
// The client leg has one writer for data: the upstream's pump, which relays
// the upstream's messages into it. Pushed messages go through that same
// pump, between two relayed messages: it looks at the session's queue at the
// top of its loop, where a frame has been relayed whole, and delivers only
// when the upstream is not in the middle of a fragmented message. So a push
// never lands between the fragments of a message, and pushes reach the
// client in the order they were queued. Pushing wakes the pump (a read
// deadline in the past, or a resume if it is parked); once the queue is
// empty the pump reads, and parks, as before.
//
// A session that was never pushed to has no queue: the pointer costs the
// only memory, and the pump's check is one atomic load per frame.

// Push queue bounds: past either, Push reports ErrQueueFull. A single
// message larger than PushQueueBytes is still taken when the queue is empty
// (the route's max_message_bytes bounds it).
const (
	PushQueueMessages = 64
	PushQueueBytes    = 1 << 20
)

// Errors Push and Disconnect report.
var (
	ErrQueueFull = errors.New("relay: push queue full")
	ErrClosing   = errors.New("relay: session closing")
)

// pushQueue holds the frames queued for a session's client. The admin side
// appends under mu; the upstream's pump takes from the front.
type pushQueue struct {
	mu     sync.Mutex
	frames [][]byte // whole frames; frames[head:] are waiting
	head   int
	bytes  int  // bytes of the waiting frames, including the one being written
	closed bool // Disconnect was called: nothing more is taken
	// code and why are the Close the client gets once the queue is
	// delivered (Disconnect with messages waiting); code 0: none.
	code frame.CloseCode
	why  string

	ready     atomic.Bool  // frames are waiting (the pump's check)
	delivered atomic.Int64 // frames written to the client
	count     Counter      // bumped per delivered frame; may be nil
}

// PushFrame returns payload as one unfragmented, unmasked frame toward a
// client: binary, or text (the caller checked it is UTF-8). RSV bits are
// clear: pushed messages are never compressed. The result may be shared by
// many sessions (a broadcast): nobody writes to it.
func PushFrame(text bool, payload []byte) []byte {
	h := frame.Header{Fin: true, Opcode: frame.OpBinary}
	if text {
		h.Opcode = frame.OpText
	}
	b := make([]byte, 0, frame.MaxHeaderSize+len(payload))
	return frame.AppendFrame(b, h, payload)
}

// Push queues f (from PushFrame) for the client. It reports ErrClosing once
// the session is closing (a Close was sent or received on either leg, a leg
// is gone, or Disconnect was called), and ErrQueueFull when the queue holds
// PushQueueMessages frames or f would take it past PushQueueBytes. count,
// if not nil, is bumped per delivered frame; only the first push's counts.
func (s *Session) Push(f []byte, count Counter) error {
	if s.Closing() {
		return ErrClosing
	}
	q := s.push.Load()
	if q == nil {
		q = &pushQueue{count: count}
		if !s.push.CompareAndSwap(nil, q) {
			q = s.push.Load()
		}
	}
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return ErrClosing
	case len(q.frames)-q.head >= PushQueueMessages, q.bytes > 0 && q.bytes+len(f) > PushQueueBytes:
		q.mu.Unlock()
		return ErrQueueFull
	}
	q.frames = append(q.frames, f)
	q.bytes += len(f)
	q.ready.Store(true)
	q.mu.Unlock()
	// After the store: the pump's park checks ready, and a wake that
	// races with its park is never lost (gen).
	s.u.wake()
	return nil
}

// MaxMessage is the session's max_message_bytes: the most a pushed
// message may carry.
func (s *Session) MaxMessage() int64 { return s.cfg.MaxMessage }

// Pushed is how many pushed messages reached the client's connection.
func (s *Session) Pushed() int64 {
	if q := s.push.Load(); q != nil {
		return q.delivered.Load()
	}
	return 0
}

// Closing reports whether the session takes no more pushes: a Close was
// sent or received on either leg, a leg is gone, or Disconnect was called.
func (s *Session) Closing() bool {
	for _, l := range [...]*leg{&s.c, &s.u} {
		if l.sentClose.Load() || l.recvClose.Load() || l.dead.Load() {
			return true
		}
	}
	if q := s.push.Load(); q != nil {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.closed
	}
	return false
}

// Disconnect closes the session on an admin's request: the client gets
// Close(code, reason), the upstream 1001 (README "Sessions API and
// events"). Messages already queued for the client are delivered first;
// if the upstream's pump cannot get to them within close_timeout (the
// upstream stalled inside a fragmented message), the Close goes out
// without them. The caller checked code is one an admin may send.
func (s *Session) Disconnect(code frame.CloseCode, reason string) {
	if q := s.push.Load(); q != nil {
		q.mu.Lock()
		q.closed = true
		waiting := len(q.frames) > q.head
		if waiting {
			q.code, q.why = code, reason
		}
		q.mu.Unlock()
		if waiting {
			s.u.wake()
			time.AfterFunc(s.cfg.CloseTimeout, func() { s.disconnect(code, reason) })
			return
		}
	}
	s.disconnect(code, reason)
}

// disconnect sends the admin's Close to the client and 1001 to the
// upstream. A leg already closing keeps its own handshake (closeSide).
func (s *Session) disconnect(code frame.CloseCode, reason string) {
	s.emu.Lock()
	defer s.emu.Unlock()
	s.setWhy(whyAdmin, "gateway")
	s.closeSide(&s.c, code, reason)
	s.closeSide(&s.u, frame.CloseGoingAway, reason)
}

// whyAdmin: the session was closed through the admin API.
const whyAdmin = "admin"

// pushReady reports whether src's pump has pushed messages to deliver now:
// src is the upstream leg, frames are waiting, and the upstream is between
// messages. Called at the top of the pump's loop: one atomic load per frame.
func (s *Session) pushReady(src *leg) bool {
	if src != &s.u {
		return false
	}
	q := s.push.Load()
	return q != nil && q.ready.Load() && !src.msg.InMessage()
}

// pushWaiting reports whether the upstream leg must not park: pushed
// messages wait for its pump.
func (s *Session) pushWaiting(src *leg) bool {
	if src != &s.u {
		return false
	}
	q := s.push.Load()
	return q != nil && q.ready.Load()
}

// deliver writes the queued frames to the client, in order, on the
// upstream's pump (the client's one data writer). Frames the pump holds
// back for batching go first: they were read before.
func (s *Session) deliver() {
	s.flush(&s.u)
	q := s.push.Load()
	c := &s.c
	for {
		q.mu.Lock()
		if q.head == len(q.frames) {
			// Empty: give the slice back, an idle session keeps none.
			q.frames, q.head, q.bytes = nil, 0, 0
			q.ready.Store(false)
			code, why := q.code, q.why
			q.mu.Unlock()
			if code != 0 {
				s.disconnect(code, why)
			}
			return
		}
		f := q.frames[q.head]
		q.frames[q.head] = nil
		q.head++
		q.mu.Unlock()
		ok := c.lockWrite()
		var err error
		if ok {
			err = c.writeChunk(f, s.cfg.WriteTimeout)
			c.wmu.Unlock()
		}
		q.mu.Lock()
		q.bytes -= len(f)
		q.mu.Unlock()
		if !ok {
			continue // the client is closing: what is left is dropped
		}
		if err != nil {
			s.gone(c)
			continue
		}
		q.delivered.Add(1)
		if q.count != nil {
			q.count.Inc()
		}
	}
}

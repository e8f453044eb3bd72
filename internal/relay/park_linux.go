package relay

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Poller is the epoll instance that watches one gateway's parked legs. A leg parks
// when it has been quiet for ParkAfter: its pump goroutine ends and its read
// buffer goes back to the pool, so an idle session holds neither a goroutine
// stack nor a buffer — only its state. The poller's goroutine waits for any
// parked connection to become readable and starts that leg's pump again.
//
// Go's own netpoller watches the same descriptors (edge-triggered, in its
// own epoll instance); this one is level-triggered and one-shot, so a leg
// that parks with data already waiting is resumed at once, and each park
// gets at most one event.
type Poller struct {
	epfd   int
	closed atomic.Bool
	mu     sync.Mutex
	// legs[fd] is the leg last parked on descriptor fd (nil: none), in
	// a slice rather than a map: descriptors are small and dense, and an
	// entry then costs 8 bytes per idle connection.
	legs     []*leg
	watching int // entries that are not nil
	trim     trimState

	// The parked legs' timers (their next keepalive, pong, idle, lifetime
	// or expiry deadline): a min-heap by deadline under mu, one entry per
	// parked leg that has one, instead of a time.Timer per leg (about
	// 110 bytes each, BENCHMARKS.md "Performance, part 3"). The loop's
	// epoll_wait sleeps until the first deadline, at most pollWait; a
	// leg that parks with an earlier deadline than the loop's wake-up
	// writes a byte to wake[1] (epoll watches wake[0]).
	due    legHeap
	wakeAt int64  // the loop's next wake-up, p.now() ns; 0: it is awake (under mu)
	wake   [2]int // a non-blocking pipe
	epoch  time.Time
	firing []*leg        // the loop's, reused
	wakes  atomic.Uint32 // wake bytes written, for tests
}

// legHeap orders parked legs by pdue. A leg's pidx is its index + 1 (0:
// not in the heap).
type legHeap []*leg

func (h legHeap) Len() int           { return len(h) }
func (h legHeap) Less(i, j int) bool { return h[i].pdue < h[j].pdue }
func (h legHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pidx, h[j].pidx = int32(i+1), int32(j+1)
}
func (h *legHeap) Push(x any) {
	l := x.(*leg)
	l.pidx = int32(len(*h) + 1)
	*h = append(*h, l)
}
func (h *legHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.pidx = 0
	return l
}

// now is the poller's clock: monotonic nanoseconds since it started.
func (p *Poller) now() int64 { return int64(time.Since(p.epoch)) }

// schedule sets parked leg l's timer to fire after wait (resuming it).
// Called with l.pmu held.
func (p *Poller) schedule(l *leg, wait time.Duration) {
	p.scheduleAt(l, p.now()+int64(wait))
}

// scheduleAt is schedule with the deadline on the poller's clock.
func (p *Poller) scheduleAt(l *leg, due int64) {
	p.mu.Lock()
	l.pdue = due
	if l.pidx != 0 {
		heap.Fix(&p.due, int(l.pidx-1))
	} else {
		heap.Push(&p.due, l)
	}
	if p.wakeAt != 0 && due < p.wakeAt && p.wake[1] >= 0 {
		p.wakeAt = 0 // one byte is enough until the loop looks again
		_, _ = syscall.Write(p.wake[1], wakeByte[:])
		p.wakes.Add(1)
	}
	p.mu.Unlock()
}

var wakeByte [1]byte

// unschedule stops l's timer, if it has one. Called with l.pmu held.
func (p *Poller) unschedule(l *leg) {
	p.mu.Lock()
	if l.pidx != 0 {
		heap.Remove(&p.due, int(l.pidx-1))
	}
	p.mu.Unlock()
}

// popDue takes the legs whose deadline is not after now out of the heap,
// appending them to out, and sets the loop's next wake-up: it returns how
// long the loop may sleep, in milliseconds (rounded up, at most pollWait).
func (p *Poller) popDue(now int64, out []*leg) ([]*leg, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.due) > 0 && p.due[0].pdue <= now {
		out = append(out, heap.Pop(&p.due).(*leg))
	}
	wait := int64(pollWait) * int64(time.Millisecond)
	if len(p.due) > 0 {
		wait = min(wait, p.due[0].pdue-now)
	}
	p.wakeAt = now + wait
	return out, int((wait + int64(time.Millisecond) - 1) / int64(time.Millisecond))
}

// setLeg records l (nil: none) for fd. Called with p.mu held.
func (p *Poller) setLeg(fd int32, l *leg) {
	if int(fd) >= len(p.legs) {
		if l == nil {
			return
		}
		grown := make([]*leg, max(int(fd)+1, 2*len(p.legs), 64))
		copy(grown, p.legs)
		p.legs = grown
	}
	switch old := p.legs[fd]; {
	case old == nil && l != nil:
		p.watching++
	case old != nil && l == nil:
		p.watching--
	}
	p.legs[fd] = l
}

// legOf is the leg recorded for fd, or nil. Called with p.mu held.
func (p *Poller) legOf(fd int32) *leg {
	if fd >= 0 && int(fd) < len(p.legs) {
		return p.legs[fd]
	}
	return nil
}

// NewPoller starts a poller, or returns nil if epoll is unavailable (legs
// then never park). Close stops it.
func NewPoller() *Poller {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	p := &Poller{epfd: fd, epoch: time.Now()}
	if err := syscall.Pipe2(p.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(fd)
		return nil
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p.wake[0])}
	if err := syscall.EpollCtl(fd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		syscall.Close(fd)
		syscall.Close(p.wake[0])
		syscall.Close(p.wake[1])
		return nil
	}
	go p.loop()
	return p
}

// Close stops the poller's goroutine (within pollWait) and releases its
// epoll instance. Legs still parked on it are not resumed: call it once
// every session has ended.
func (p *Poller) Close() {
	if p != nil {
		p.closed.Store(true)
	}
}

// Watching is the number of descriptors registered (parked now, or parked
// once and not finished).
func (p *Poller) Watching() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.watching
}

// pollWait bounds each wait, so that a closed poller's goroutine ends.
const pollWait = 500 // ms

const parkEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

func (p *Poller) loop() {
	var evs [128]syscall.EpollEvent
	var drain [64]byte
	for {
		var wait int
		p.firing, wait = p.popDue(p.now(), p.firing[:0])
		for i, l := range p.firing {
			// Its deadline: the pump runs the leg's timers. A leg
			// resumed meanwhile only gets an extra look at them.
			l.unpark(false)
			p.firing[i] = nil
		}
		n, err := syscall.EpollWait(p.epfd, evs[:], wait)
		if p.closed.Load() {
			// Under mu: a late schedule must not write to a
			// descriptor number that a new connection may reuse.
			p.mu.Lock()
			syscall.Close(p.epfd)
			syscall.Close(p.wake[0])
			syscall.Close(p.wake[1])
			p.wake = [2]int{-1, -1}
			p.mu.Unlock()
			return
		}
		if err != nil {
			continue // EINTR
		}
		for i := range evs[:n] {
			if int(evs[i].Fd) == p.wake[0] {
				for {
					if k, _ := syscall.Read(p.wake[0], drain[:]); k <= 0 {
						break
					}
				}
				continue
			}
			p.mu.Lock()
			l := p.legOf(evs[i].Fd)
			p.mu.Unlock()
			if l != nil {
				// A stale entry (the descriptor was closed and reused)
				// only resumes a leg that then finds nothing to read
				// and parks again.
				l.unpark(true)
			}
		}
	}
}

// arm watches l's descriptor for one readable event. It reports false if
// the descriptor cannot be watched (l is closing): the caller keeps reading
// in the usual way.
func (p *Poller) arm(l *leg) bool {
	if p.closed.Load() {
		return false // its epoll instance is (being) closed
	}
	ok := false
	raw, err := tcpUnder(l.conn).SyscallConn()
	if err != nil {
		return false
	}
	// Control holds a reference on the descriptor: it cannot be closed
	// (and reused) while it is being registered.
	err = raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: parkEvents, Fd: int32(fd)}
		op := syscall.EPOLL_CTL_MOD
		if !l.armed {
			op = syscall.EPOLL_CTL_ADD
			p.mu.Lock()
			p.setLeg(int32(fd), l)
			p.mu.Unlock()
		}
		if syscall.EpollCtl(p.epfd, op, int(fd), &ev) == nil {
			l.armed, l.fd, ok = true, int32(fd), true
		} else if op == syscall.EPOLL_CTL_ADD {
			p.mu.Lock()
			p.setLeg(int32(fd), nil)
			p.mu.Unlock()
		}
	})
	return err == nil && ok
}

// forget drops l's entry, if it is still l's (its descriptor may have been
// closed and taken by a new connection already). Called with l.pmu held
// as l finishes, before its connection is closed.
func (p *Poller) forget(l *leg) {
	p.mu.Lock()
	if p.legOf(l.fd) == l {
		p.setLeg(l.fd, nil)
	}
	p.mu.Unlock()
}

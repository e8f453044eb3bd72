package relay

import (
	"sync"
	"sync/atomic"
	"syscall"
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
	p := &Poller{epfd: fd}
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
	for {
		n, err := syscall.EpollWait(p.epfd, evs[:], pollWait)
		if p.closed.Load() {
			syscall.Close(p.epfd)
			return
		}
		if err != nil {
			continue // EINTR
		}
		for i := range evs[:n] {
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
	// Control holds a reference on the descriptor: it cannot be closed
	// (and reused) while it is being registered.
	err := l.raw.Control(func(fd uintptr) {
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

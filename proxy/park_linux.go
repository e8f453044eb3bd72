package proxy

import (
	"sync"
	"syscall"
)

// poller is the one epoll instance that watches parked legs. A leg parks
// when it has been quiet for parkAfter: its pump goroutine ends and its read
// buffer goes back to the pool, so an idle session holds neither a goroutine
// stack nor a buffer — only its state. The poller's goroutine waits for any
// parked connection to become readable and starts that leg's pump again.
//
// Go's own netpoller watches the same descriptors (edge-triggered, in its
// own epoll instance); this one is level-triggered and one-shot, so a leg
// that parks with data already waiting is resumed at once, and each park
// gets at most one event.
type poller struct {
	epfd int
	mu   sync.Mutex
	legs map[int32]*leg // descriptor → the leg last parked on it
}

var (
	pollerOnce sync.Once
	pollerP    *poller
)

// thePoller is started on the first park; nil if epoll is unavailable, in
// which case legs never park.
func thePoller() *poller {
	pollerOnce.Do(func() {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		pollerP = &poller{epfd: fd, legs: make(map[int32]*leg)}
		go pollerP.loop()
	})
	return pollerP
}

const parkEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

func (p *poller) loop() {
	var evs [128]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(p.epfd, evs[:], -1)
		if err != nil {
			continue // EINTR
		}
		for i := range evs[:n] {
			p.mu.Lock()
			l := p.legs[evs[i].Fd]
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
func (p *poller) arm(l *leg) bool {
	ok := false
	// Control holds a reference on the descriptor: it cannot be closed
	// (and reused) while it is being registered.
	err := l.raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: parkEvents, Fd: int32(fd)}
		op := syscall.EPOLL_CTL_MOD
		if !l.armed {
			op = syscall.EPOLL_CTL_ADD
			p.mu.Lock()
			p.legs[int32(fd)] = l
			p.mu.Unlock()
		}
		if syscall.EpollCtl(p.epfd, op, int(fd), &ev) == nil {
			l.armed, l.fd, ok = true, int32(fd), true
		} else if op == syscall.EPOLL_CTL_ADD {
			p.mu.Lock()
			delete(p.legs, int32(fd))
			p.mu.Unlock()
		}
	})
	return err == nil && ok
}

// forget drops l's entry, if it is still l's (its descriptor may have been
// closed and taken by a new connection already). Called with l.pmu held
// as l finishes, before its connection is closed.
func (p *poller) forget(l *leg) {
	p.mu.Lock()
	if p.legs[l.fd] == l {
		delete(p.legs, l.fd)
	}
	p.mu.Unlock()
}

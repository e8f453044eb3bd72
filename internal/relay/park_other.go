//go:build !linux

package relay

import "time"

// Without epoll, legs never park: every session keeps its two pump
// goroutines for its whole life.
type Poller struct{ trim trimState }

// NewPoller returns nil: legs never park.
func NewPoller() *Poller { return nil }

// Close does nothing.
func (p *Poller) Close() {}

// Watching is 0.
func (p *Poller) Watching() int { return 0 }

func (p *Poller) arm(l *leg) bool                     { return false }
func (p *Poller) forget(l *leg)                       {}
func (p *Poller) schedule(l *leg, wait time.Duration) {}
func (p *Poller) unschedule(l *leg)                   {}

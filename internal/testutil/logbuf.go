// Package testutil holds what tests of several packages share: a log
// buffer safe for concurrent writers and the payloads of the compression
// tests (ChatJSON).
package testutil

import (
	"bytes"
	"strings"
	"sync"
)

// LogBuffer is a bytes.Buffer safe for the gateway's concurrent logging.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Lines returns the logged lines that contain every one of substrs.
func (s *LogBuffer) Lines(substrs ...string) []string {
	var out []string
	for _, l := range strings.Split(s.String(), "\n") {
		ok := l != ""
		for _, sub := range substrs {
			ok = ok && strings.Contains(l, sub)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

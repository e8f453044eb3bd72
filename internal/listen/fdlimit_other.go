//go:build !unix

package listen

// openFileLimit: no RLIMIT_NOFILE to read.
func openFileLimit() (soft, hard uint64, ok bool) { return 0, 0, false }

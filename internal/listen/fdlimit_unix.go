//go:build unix

package listen

import "syscall"

// openFileLimit returns the process's RLIMIT_NOFILE.
func openFileLimit() (soft, hard uint64, ok bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, false
	}
	return uint64(lim.Cur), uint64(lim.Max), true
}

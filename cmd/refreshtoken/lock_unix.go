//go:build unix

package main

import (
	"os"
	"syscall"
)

// lock takes an exclusive lock on path (created if missing), waiting for
// it, so that concurrent invocations do not refresh with the same refresh
// token: with rotation, the second would be taken for a reuse. The kernel
// releases the lock when the process exits, however it exits.
func lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

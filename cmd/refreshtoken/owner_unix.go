//go:build unix

package main

import (
	"io/fs"
	"os"
	"syscall"
)

// ownedByOther reports whether another user owns the file fi describes:
// a key file that another user can replace is not the user's secret.
// (package filestore holds the state file to the same rule.)
func ownedByOther(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) != os.Geteuid()
}

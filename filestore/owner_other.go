//go:build !unix

package filestore

import "io/fs"

// owner reports no owner: outside unix a file has no owner's user ID to
// compare with the process's (on Windows, its ACL protects it).
func owner(fs.FileInfo) (uid int, ok bool) {
	return 0, false
}

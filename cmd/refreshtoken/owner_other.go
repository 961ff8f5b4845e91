//go:build !unix

package main

import "io/fs"

// ownedByOther reports false: outside unix a file has no owner's user ID
// to compare with the process's (on Windows, its ACL protects it).
func ownedByOther(fs.FileInfo) bool { return false }

// Package atomicfile replaces a file so that, whenever the writing process
// or the machine stops, the file holds either its old content or the new
// one, never a mix: for files that hold a refresh token or what it belongs
// to, which filestore and the refreshtoken command keep.
package atomicfile

import (
	"os"
	"path/filepath"
	"runtime"
)

// Write replaces the file at path with b: a temporary file in the
// same directory (so that the rename does not cross file systems), synced
// before the rename so that the new name never points at unwritten data,
// and the directory synced after it so that the rename itself is durable.
// The directory is made (mode 0700) if needed, and the file has mode 0600.
func Write(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable. Windows cannot open a directory
// for syncing, and makes renames durable on its own.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

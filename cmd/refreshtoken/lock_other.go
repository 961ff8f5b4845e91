//go:build !unix

package main

// lock does nothing where flock is not available: there, run one
// invocation at a time per state file.
func lock(string) (func(), error) { return func() {}, nil }

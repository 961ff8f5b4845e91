package refreshtoken

// WaitIdle is waitIdle, for the tests of package refreshtoken_test.
var WaitIdle = waitIdle

// Waiting returns how many callers of ts wait for a refresh, as
// RefreshEnded.Waiters counts them (only with an observer).
func Waiting(ts *TokenSource) int {
	n, _ := ts.waiting.count()
	return n
}

package refreshtoken

// waitIdle returns once no refresh of ts is running: it waits for the one in flight, if any, and then takes mu, which a refresh holds from before it forgets its flight until it ends.
func waitIdle(ts *TokenSource) {
	if f := ts.flight.Load(); f != nil {
		<-f.done
	}
	ts.mu.Lock()
	ts.mu.Unlock()
}

package refreshtoken

// waitIdle returns once no refresh of ts is running: it joins one in
// flight (singleflight), and then takes mu, which a refresh holds from
// before it forgets its key until it ends.
func waitIdle(ts *TokenSource) {
	ts.group.Do(ts.flightKey, func() (any, error) { return nil, nil })
	ts.own.mu.Lock()
	ts.own.mu.Unlock()
}

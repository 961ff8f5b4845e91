package refreshtokentest

import "time"

// refreshDeadline returns when rt expires by Config.RefreshAbsolute and
// Config.RefreshInactivity; zero if it does not. Called with mu held.
func (s *Server) refreshDeadline(rt *refreshState) time.Time {
	var deadline time.Time
	if s.cfg.RefreshAbsolute > 0 {
		deadline = rt.family.started.Add(s.cfg.RefreshAbsolute)
	}
	if s.cfg.RefreshInactivity > 0 {
		active := rt.family.started
		for _, t := range []time.Time{rt.issuedAt, rt.lastUsed} {
			if t.After(active) {
				active = t
			}
		}
		if idle := active.Add(s.cfg.RefreshInactivity); deadline.IsZero() || idle.Before(deadline) {
			deadline = idle
		}
	}
	return deadline
}

// refreshExpired reports whether rt is past its deadline at now. Called
// with mu held.
func (s *Server) refreshExpired(rt *refreshState, now time.Time) bool {
	d := s.refreshDeadline(rt)
	return !d.IsZero() && !now.Before(d)
}

// putRefreshLife adds to body, an answer that issued or used rt at now,
// the seconds rt has left, in Config.RefreshExpiresInField. Called with mu
// held.
func (s *Server) putRefreshLife(body map[string]any, rt *refreshState, now time.Time) {
	if d := s.refreshDeadline(rt); s.cfg.RefreshExpiresInField != "" && !d.IsZero() {
		body[s.cfg.RefreshExpiresInField] = int64(d.Sub(now) / time.Second)
	}
}

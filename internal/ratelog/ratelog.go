// Package ratelog holds back repeated log lines: a Limiter lets one line
// through per interval and counts the ones it held back, for the next
// line to report (as origin refusals, auth refusals and slow clients are
// logged: a flood of them must not flood the log).
//
// Concurrency: a Limiter is safe for concurrent use; the package starts
// no goroutines.
package ratelog

import (
	"log/slog"
	"sync"
	"time"
)

// DefaultEvery is the interval Allow takes for 0.
const DefaultEvery = 10 * time.Second

// Limiter lets one line through per interval. The zero Limiter is ready
// to use.
type Limiter struct {
	mu   sync.Mutex
	last time.Time
	held int
}

// Allow reports whether a line may be logged now, every (DefaultEvery
// if 0) after the last one, and if so how many were held back since; a
// line not allowed is counted as held back. Its cost is one lock.
func (l *Limiter) Allow(every time.Duration) (held int, ok bool) {
	if every <= 0 {
		every = DefaultEvery
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < every {
		l.held++
		return 0, false
	}
	held, l.last, l.held = l.held, now, 0
	return held, true
}

// Warn logs msg at warn level, with args and "not_logged" (the lines
// held back since the last one), if l lets a line through now (one per
// DefaultEvery).
func (l *Limiter) Warn(log *slog.Logger, msg string, args ...any) {
	if held, ok := l.Allow(0); ok {
		log.Warn(msg, append(args, "not_logged", held)...)
	}
}

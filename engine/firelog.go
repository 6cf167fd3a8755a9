package engine

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultFireLogEvery is how often a FireLog logs the failed fires of one
// trigger owner.
const DefaultFireLogEvery = 10 * time.Second

// FireLog logs the fires that failed or were skipped, at most once per
// trigger owner (the connection that registered the trigger, or the
// trigger itself when it has none) per interval, with the number of lines
// it held back since the last. A hostile owner's failing fires thus cost
// one log line per interval, not one per event. Safe for concurrent use;
// it starts nothing.
type FireLog struct {
	log   *slog.Logger
	every time.Duration

	mu     sync.Mutex
	owners map[string]*fireLogOwner
	swept  time.Time
}

type fireLogOwner struct {
	next time.Time // when the owner may log again
	held int       // lines held back since its last
}

// NewFireLog returns a FireLog writing to log (nil: nowhere) at most once
// per owner every interval (zero: DefaultFireLogEvery).
func NewFireLog(log *slog.Logger, every time.Duration) *FireLog {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if every <= 0 {
		every = DefaultFireLogEvery
	}
	return &FireLog{log: log, every: every, owners: make(map[string]*fireLogOwner)}
}

// Warn logs msg about a fire of t at Warn level, unless t's owner logged
// one less than the interval ago; then it counts it.
func (l *FireLog) Warn(t Trigger, msg string, args ...any) {
	key, owner := l.owner(t)
	l.logf(slog.LevelWarn, key, msg, append(args, owner...))
}

// Error is Warn at Error level, for what an operator must act on.
func (l *FireLog) Error(t Trigger, msg string, args ...any) {
	key, owner := l.owner(t)
	l.logf(slog.LevelError, key, msg, append(args, owner...))
}

// WarnFor is Warn for work that no trigger owns (a named queue's jobs):
// key names what it is limited by.
func (l *FireLog) WarnFor(key, msg string, args ...any) {
	l.logf(slog.LevelWarn, "key "+key, msg, args)
}

// ErrorFor is WarnFor at Error level.
func (l *FireLog) ErrorFor(key, msg string, args ...any) {
	l.logf(slog.LevelError, "key "+key, msg, args)
}

// owner is the key t's lines are limited by, and the attributes that
// name it.
func (*FireLog) owner(t Trigger) (string, []any) {
	if t.by != nil {
		return "session " + t.by.id, []any{LogTriggerID, t.ID, LogWorkerID, t.by.id}
	}
	return "trigger " + t.ID, []any{LogTriggerID, t.ID}
}

func (l *FireLog) logf(level slog.Level, key, msg string, args []any) {
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.swept) >= l.every {
		for k, o := range l.owners {
			if now.After(o.next.Add(l.every)) {
				delete(l.owners, k)
			}
		}
		l.swept = now
	}
	o := l.owners[key]
	if o == nil {
		o = &fireLogOwner{}
		l.owners[key] = o
	}
	if now.Before(o.next) {
		o.held++
		l.mu.Unlock()
		return
	}
	held := o.held
	o.next, o.held = now.Add(l.every), 0
	l.mu.Unlock()
	if held > 0 {
		args = append(args, "held_back", held, "held_back_over", l.every)
	}
	l.log.Log(context.Background(), level, msg, args...)
}

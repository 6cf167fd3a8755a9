package engine

import (
	"strings"

	"golang.org/x/time/rate"

	"github.com/trinehq/trine/codes"
)

// What a session's registrations hold is counted in bytes (ids,
// descriptions, metadata, schemas, trigger configs) and in functions and
// triggers, per account and in total, so that no connection can grow the
// engine by registering: past a cap a registration is refused with
// overloaded and nothing is kept. A trusted session is its own account;
// the sessions of one identity under a policy (same listener, token or
// certificate, and auth answer) share one, so that opening more
// connections gives an identity no more room, and no faster trigger fires.
// Everything here is guarded by Engine.mu.

// account is what one trusted session, or one identity under a policy,
// holds.
type account struct {
	key                        string // "" for a trusted session's own
	bytes, functions, triggers int
	fires                      *rate.Limiter // how often its triggers may fire (under a policy)
	sessions                   int
}

// openAccount returns the account of a new session under g (nil: its own).
func (e *Engine) openAccount(g *Grant) *account {
	newAccount := func(key string) *account {
		return &account{key: key, sessions: 1,
			fires: rate.NewLimiter(rate.Limit(e.cfg.TriggerFireRate), max(1, int(e.cfg.TriggerFireRate)))}
	}
	if g == nil {
		return newAccount("")
	}
	key := g.accountKey()
	if a := e.accounts[key]; a != nil {
		a.sessions++
		return a
	}
	a := newAccount(key)
	e.accounts[key] = a
	return a
}

// closeAccount lets go of s's account once s holds nothing.
func (e *Engine) closeAccount(s *Session) {
	a := s.acct
	if a == nil || a.key == "" {
		return
	}
	if a.sessions--; a.sessions == 0 {
		delete(e.accounts, a.key)
	}
}

// usageKey names one registration of a session.
func usageKey(kind, id string) string { return kind + "\x00" + id }

// fits reports whether s's registration key may hold size bytes (in place
// of what it holds now).
func (e *Engine) fits(s *Session, key string, size int) *Error {
	delta := size - s.regSize[key]
	if delta <= 0 {
		return nil
	}
	if s.acct.bytes+delta > e.cfg.MaxRegistrationBytesPerWorker {
		return Errorf(codes.Overloaded, "the registrations of this connection (with the others of its identity) hold %d bytes, and %d more would pass the %d it may (--max-registration-bytes-per-worker)",
			s.acct.bytes, delta, e.cfg.MaxRegistrationBytesPerWorker)
	}
	if e.regBytes+delta > e.cfg.MaxRegistrationBytes {
		return Errorf(codes.Overloaded, "the engine's registrations hold %d bytes, and %d more would pass the %d it may (--max-registration-bytes)",
			e.regBytes, delta, e.cfg.MaxRegistrationBytes)
	}
	return nil
}

// charge records that s's registration key holds size bytes (0: none),
// counting the functions and triggers of its account as they come and go.
func (e *Engine) charge(s *Session, key string, size int) {
	old, had := s.regSize[key]
	if size == 0 {
		delete(s.regSize, key)
	} else {
		s.regSize[key] = size
	}
	n := 0
	switch {
	case size != 0 && !had:
		n = 1
	case size == 0 && had:
		n = -1
	}
	switch key[:strings.IndexByte(key, 0)] {
	case "function":
		s.acct.functions += n
	case "trigger":
		s.acct.triggers += n
	}
	s.acct.bytes += size - old
	e.regBytes += size - old
}

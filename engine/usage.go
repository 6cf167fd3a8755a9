package engine

// What a session's registrations hold is counted in bytes (ids,
// descriptions, metadata, schemas, trigger configs), per session and in
// total, so that no connection can grow the engine by registering: past
// Config.MaxRegistrationBytesPerWorker or Config.MaxRegistrationBytes a
// registration is refused with overloaded and nothing is kept. Everything
// here is guarded by Engine.mu.

// usageKey names one registration of a session.
func usageKey(kind, id string) string { return kind + "\x00" + id }

// fits reports whether s's registration key may hold size bytes (in place
// of what it holds now).
func (e *Engine) fits(s *Session, key string, size int) *Error {
	delta := size - s.regSize[key]
	if delta <= 0 {
		return nil
	}
	if s.regBytes+delta > e.cfg.MaxRegistrationBytesPerWorker {
		return Errorf(CodeOverloaded, "this connection's registrations hold %d bytes, and %d more would pass the %d it may (--max-registration-bytes-per-worker)",
			s.regBytes, delta, e.cfg.MaxRegistrationBytesPerWorker)
	}
	if e.regBytes+delta > e.cfg.MaxRegistrationBytes {
		return Errorf(CodeOverloaded, "the engine's registrations hold %d bytes, and %d more would pass the %d it may (--max-registration-bytes)",
			e.regBytes, delta, e.cfg.MaxRegistrationBytes)
	}
	return nil
}

// charge records that s's registration key holds size bytes (0: none).
func (e *Engine) charge(s *Session, key string, size int) {
	delta := size - s.regSize[key]
	if size == 0 {
		delete(s.regSize, key)
	} else {
		s.regSize[key] = size
	}
	s.regBytes += delta
	e.regBytes += delta
}

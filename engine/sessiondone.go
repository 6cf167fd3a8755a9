package engine

// SessionDone returns a channel that is closed when the worker session id
// of this engine ends (Call.CallerID names it), so that a module can
// release what the session's calls made. ok is false when no live session
// of this engine has that id: the caller is not a worker, a worker of
// another engine, or gone already.
func (e *Engine) SessionDone(id string) (done <-chan struct{}, ok bool) {
	if id == "" {
		return nil, false
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	s := e.workers[id]
	if s == nil {
		return nil, false
	}
	return s.done, true
}

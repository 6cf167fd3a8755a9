package gateway

// subSet is a connection's subscriptions, by id. Most connections have
// one (a group's socket), which it holds without a map: an idle socket
// then carries no map of its own. Guarded by conn.mu.
type subSet struct {
	one  *subscription
	more map[string]*subscription // the others, made when a second comes
}

// get is the subscription id, or nil.
func (ss *subSet) get(id string) *subscription {
	if ss.one != nil && ss.one.id == id {
		return ss.one
	}
	return ss.more[id]
}

// put keeps s under s.id, in place of the subscription it had.
func (ss *subSet) put(s *subscription) {
	switch {
	case ss.one != nil && ss.one.id == s.id:
		ss.one = s
	case ss.more[s.id] != nil:
		ss.more[s.id] = s
	case ss.one == nil:
		ss.one = s
	default:
		if ss.more == nil {
			ss.more = make(map[string]*subscription)
		}
		ss.more[s.id] = s
	}
}

// remove removes the subscription id, if any, and returns it.
func (ss *subSet) remove(id string) *subscription {
	if ss.one != nil && ss.one.id == id {
		s := ss.one
		ss.one = nil
		return s
	}
	s := ss.more[id]
	delete(ss.more, id)
	return s
}

func (ss *subSet) len() int {
	n := len(ss.more)
	if ss.one != nil {
		n++
	}
	return n
}

// removeIf removes and returns the subscriptions f holds for (all of them
// for a nil f).
func (ss *subSet) removeIf(f func(*subscription) bool) []*subscription {
	var out []*subscription
	if ss.one != nil && (f == nil || f(ss.one)) {
		out = append(out, ss.one)
		ss.one = nil
	}
	for id, s := range ss.more {
		if f == nil || f(s) {
			out = append(out, s)
			delete(ss.more, id)
		}
	}
	return out
}

// all yields every subscription.
func (ss *subSet) all(yield func(*subscription) bool) {
	if ss.one != nil && !yield(ss.one) {
		return
	}
	for _, s := range ss.more {
		if !yield(s) {
			return
		}
	}
}

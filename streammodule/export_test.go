package streammodule

import "github.com/trinehq/trine/streammodule/store"

// BeforeCommit makes f run between stream::set's check and its commit.
func BeforeCommit(m *Module, f func(store.Key)) { m.beforeCommit = f }

// PublishWaiting is how many commits wait for room in m's publish queue.
func PublishWaiting(m *Module) int {
	m.pub.mu.Lock()
	defer m.pub.mu.Unlock()
	return m.pub.waiting
}

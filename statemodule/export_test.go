package statemodule

import "github.com/trinehq/trine/streammodule/store"

// BeforeCommit makes f run between state::set's check and its commit.
func BeforeCommit(m *Module, f func(store.Key)) { m.beforeCommit = f }

package store_test

import (
	"testing"

	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/storetest"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, storetest.Adapter{
		New: func(_ *testing.T, opts store.Options) store.Store { return store.NewMemory(opts) },
	})
}

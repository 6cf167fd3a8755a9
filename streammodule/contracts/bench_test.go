package contracts

import (
	"context"
	"testing"

	"github.com/trinehq/trine/contract"
)

// BenchmarkBeginDone: what a write to a stream with a contract pays to
// find it (Lookup) and, counted in flight for a re-check to wait on
// (Begin and Done).
func BenchmarkBeginDone(b *testing.B) {
	s := NewMemorySet(Streams)
	if _, err := s.Define(context.Background(), contract.Definition{Stream: "s", Version: 1, Item: []byte(`{}`)}); err != nil {
		b.Fatal(err)
	}
	b.Run("Begin+Done", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, w, _ := s.Begin(context.Background(), "f", "s")
				w.Done()
			}
		})
	})
	b.Run("Lookup", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = s.Lookup(context.Background(), "s")
			}
		})
	})
}

// Package logtest captures what a slog.Logger writes, for tests that
// check what is logged.
//
// Concurrency: a Buffer is safe for concurrent use; the package starts no
// goroutines.
package logtest

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
)

// Buffer holds the JSON records of a logger New returned.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// New returns a logger of every level that writes JSON records to the
// Buffer.
func New() (*Buffer, *slog.Logger) {
	b := &Buffer{}
	return b, slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// Records returns the records logged with message msg, their attributes
// by key ("level", "msg", …).
func (b *Buffer) Records(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(b.b.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// String is everything logged so far, one JSON record a line.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

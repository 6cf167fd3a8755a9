package trine

import (
	"context"
	"log/slog"
	"testing"
)

// TestDefaultLogger: without WithLogger a worker and a subscription log
// warnings and errors (to stderr), not info; WithLogger(nil) logs
// nothing.
func TestDefaultLogger(t *testing.T) {
	ctx := context.Background()
	for name, l := range map[string]*slog.Logger{"worker": defaultOptions().logger, "subscription": defaultSubscribeOptions().logger} {
		if h := l.Handler(); !h.Enabled(ctx, slog.LevelWarn) || h.Enabled(ctx, slog.LevelInfo) {
			t.Errorf("%s: default logger enabled at warn %v, info %v; want warn only", name, h.Enabled(ctx, slog.LevelWarn), h.Enabled(ctx, slog.LevelInfo))
		}
	}
	o, _ := applyOptions(defaultOptions(), []Option{WithLogger(nil)}, Option.applyWorker)
	if o.logger.Handler().Enabled(ctx, slog.LevelError) {
		t.Error("WithLogger(nil) logs errors, want nothing")
	}
}

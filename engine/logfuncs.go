package engine

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/trinehq/trine/codes"
)

// The log functions, iii's engine::log::{trace,debug,info,warn,error}:
// a worker's line goes to the engine's log with the worker's identity.
// They are infrastructure functions, which any connection may call, so
// each caller gets at most logLinesPerSecond lines a second (the rest are
// dropped and counted) and long fields are cut.
const (
	logLinesPerSecond = 100
	logMessageBytes   = 4 << 10
	logDataBytes      = 16 << 10
)

// logLevels maps the functions to levels; trace is below debug.
var logLevels = map[string]slog.Level{
	"engine::log::trace": slog.LevelDebug - 4,
	"engine::log::debug": slog.LevelDebug,
	"engine::log::info":  slog.LevelInfo,
	"engine::log::warn":  slog.LevelWarn,
	"engine::log::error": slog.LevelError,
}

// logLine is the functions' input.
type logLine struct {
	Message     *string         `json:"message"`
	Data        json.RawMessage `json:"data"`
	TraceID     string          `json:"trace_id"`
	SpanID      string          `json:"span_id"`
	ServiceName string          `json:"service_name"`
}

// logLimiter counts each caller's lines in the current second.
type logLimiter struct {
	mu      sync.Mutex
	second  int64
	lines   map[string]int
	dropped map[string]int
}

// allow reports whether caller may log one more line now, and how many of
// its lines were dropped in the second that just ended (to report once).
func (l *logLimiter) allow(caller string, now time.Time) (ok bool, droppedBefore int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := now.Unix(); s != l.second {
		droppedBefore = l.dropped[caller]
		l.second, l.lines, l.dropped = s, map[string]int{}, map[string]int{}
	}
	if l.lines[caller] >= logLinesPerSecond {
		l.dropped[caller]++
		return false, droppedBefore
	}
	l.lines[caller]++
	return true, droppedBefore
}

func (e *Engine) registerLogFunctions() error {
	lim := &logLimiter{}
	for id, level := range logLevels {
		h := HandlerFunc(func(ctx context.Context, c Call) ([]byte, error) {
			var in logLine
			if err := decodeInput(c.Payload, &in); err != nil {
				return nil, err
			}
			if in.Message == nil {
				return nil, Errorf(codes.InvalidArgument, "%s needs a message", id)
			}
			ok, dropped := lim.allow(c.CallerID, e.cfg.Now())
			attrs := []any{LogWorkerID, c.CallerID}
			e.mu.RLock()
			if s := e.workers[c.CallerID]; s != nil {
				info := s.Info()
				attrs = append(attrs, LogWorkerName, info.Name)
				if info.Identity != "" {
					attrs = append(attrs, "identity", info.Identity)
				}
			}
			e.mu.RUnlock()
			if dropped > 0 {
				e.log.Warn("worker log lines dropped: over the rate limit", append(attrs, "dropped", dropped, "limit_per_second", logLinesPerSecond)...)
			}
			if !ok {
				return []byte("null"), nil
			}
			attrs = append(attrs, "source", "worker")
			if len(in.Data) > 0 && string(in.Data) != "null" {
				attrs = append(attrs, "data", cut(string(in.Data), logDataBytes))
			}
			for k, v := range map[string]string{"trace_id": in.TraceID, "span_id": in.SpanID, "service_name": in.ServiceName} {
				if v != "" {
					attrs = append(attrs, k, cut(v, 256))
				}
			}
			e.log.Log(ctx, level, cut(*in.Message, logMessageBytes), attrs...)
			return []byte("null"), nil
		})
		if err := e.RegisterFunction(id, "Write a line to the engine's log, with the calling worker; {message, data?, trace_id?, span_id?, service_name?}", h); err != nil {
			return err
		}
	}
	return nil
}

// cut shortens s to at most n bytes, on a character boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

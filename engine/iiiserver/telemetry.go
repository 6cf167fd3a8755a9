package iiiserver

import (
	"bytes"
	"time"

	"golang.org/x/time/rate"
)

// Telemetry takes the OTLP/JSON traces iii workers push (the payload of an
// "OTLP" frame, without its prefix); the tracing pipeline's ForwardJSON
// is one. It must not block.
type Telemetry interface {
	ForwardJSON(b []byte) error
}

// DefaultTelemetryBytesPerSecond is the default for
// Config.TelemetryBytesPerSecond.
const DefaultTelemetryBytesPerSecond = 1 << 20

// Telemetry frames of the iii SDKs: OTLP JSON behind a 4-byte prefix.
var (
	prefixTraces      = []byte("OTLP")
	telemetryPrefixes = [][]byte{prefixTraces, []byte("MTRC"), []byte("LOGS")}
)

// telemetryFrame reports whether b is a telemetry frame, and takes it: an
// "OTLP" frame goes to Config.Telemetry within the byte rate, and every
// other one (metrics, logs, traces with tracing off or over the rate, or
// refused by the pipeline) is dropped and counted.
func (s *Server) telemetryFrame(b []byte) bool {
	var prefix []byte
	for _, p := range telemetryPrefixes {
		if bytes.HasPrefix(b, p) {
			prefix = p
			break
		}
	}
	if prefix == nil {
		return false
	}
	t := s.cfg.Telemetry
	if t == nil || !bytes.Equal(prefix, prefixTraces) || !s.telemetryRate.AllowN(time.Now(), len(b)) {
		s.telemetryDropped.Add(1)
		return true
	}
	if err := t.ForwardJSON(b[len(prefix):]); err != nil {
		s.telemetryDropped.Add(1)
		s.log.Debug("iii telemetry dropped", "error", err)
		return true
	}
	s.telemetryForwarded.Add(1)
	return true
}

// TelemetryForwarded counts the OTLP trace frames of iii workers handed to
// Config.Telemetry; TelemetryDropped, the telemetry frames dropped.
func (s *Server) TelemetryForwarded() uint64 { return s.telemetryForwarded.Load() }

// TelemetryDropped counts the telemetry frames iii workers sent that were
// not forwarded: metrics and logs, traces while tracing is off, over
// Config.TelemetryBytesPerSecond, or that the pipeline refused.
func (s *Server) TelemetryDropped() uint64 { return s.telemetryDropped.Load() }

func newTelemetryRate(cfg Config) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(cfg.TelemetryBytesPerSecond), int(max(cfg.MaxMessageBytes, int64(cfg.TelemetryBytesPerSecond))))
}

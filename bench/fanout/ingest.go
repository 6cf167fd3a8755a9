package main

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// ingestStats, written by a server run with -cpuprofile, measure the path
// from the publisher to the fan-out: for each message, the time from its ts
// to the start of its fan-out, and how long the fan-out (queueing it for
// every subscriber) takes.
type ingestStats struct {
	start, took loadgen.Histogram
	n           atomic.Int64
}

// begin records when the fan-out of the message sent at ts starts; done,
// called with begin's result, how long it took.
func (s *ingestStats) begin(ts int64) int64 {
	now := time.Now().UnixNano()
	s.start.Record(now - ts)
	return now
}

func (s *ingestStats) done(began int64) {
	s.took.Record(time.Now().UnixNano() - began)
	s.n.Add(1)
}

func (s *ingestStats) summary() string {
	q := func(h *loadgen.Histogram) string {
		s := h.Snapshot()
		return fmt.Sprintf("p50 %v p99 %v", loadgen.RoundLatency(s.Quantile(0.5)), loadgen.RoundLatency(s.Quantile(0.99)))
	}
	return fmt.Sprintf("%d messages; publish -> fan-out start %s; fan-out (queueing to every socket) %s", s.n.Load(), q(&s.start), q(&s.took))
}

func (s *ingestStats) writeFile(path string) {
	_ = os.WriteFile(path, []byte(s.summary()+"\n"), 0o644)
}

func readIngest(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no ingest figures: " + err.Error()
	}
	return strings.TrimSpace(string(b))
}

// dataTS is the ts of a message's data ({"ts":N,…}), or false.
func dataTS(b []byte) (int64, bool) {
	const key = `{"ts":`
	if !strings.HasPrefix(string(b), key) {
		return 0, false
	}
	v, n := loadgen.ParseUint(b[len(key):])
	return int64(v), n > 0
}

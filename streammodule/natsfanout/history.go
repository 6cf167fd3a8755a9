package natsfanout

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/internal/jsboot"
	"github.com/trinehq/trine/streammodule/wire"
)

// History keeps the last events of every group in a JetStream stream that
// captures the event subjects, so that any engine, and through it any
// gateway, can replay a group's events after a sequence, whichever engine
// published them.
type History struct {
	st jetstream.Stream
}

// HistoryConfig configures OpenHistory.
type HistoryConfig struct {
	// Stream names the JetStream stream. Default "TRINE_EVENTS".
	Stream string
	// PerGroup is how many events of each group are kept.
	PerGroup int
	// Replicas is the stream's replication factor. Default 1.
	Replicas int
	// MaxBytes bounds the whole stream; past it the oldest events go.
	// 0: no bound.
	MaxBytes int64
}

// OpenHistory creates (or updates) the history stream.
func OpenHistory(ctx context.Context, nc *nats.Conn, cfg HistoryConfig) (*History, error) {
	if cfg.Stream == "" {
		cfg.Stream = "TRINE_EVENTS"
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsfanout: %w", err)
	}
	st, err := jsboot.CreateOrUpdateStream(ctx, js, jetstream.StreamConfig{
		Name:              cfg.Stream,
		Subjects:          []string{SubjectPrefix + ">"},
		Storage:           jetstream.FileStorage,
		Replicas:          max(cfg.Replicas, 1),
		MaxMsgsPerSubject: int64(max(cfg.PerGroup, 1)),
		MaxBytes:          maxBytes(cfg.MaxBytes),
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("natsfanout: history %w", err)
	}
	return &History{st: st}, nil
}

func maxBytes(n int64) int64 {
	if n <= 0 {
		return -1 // JetStream's "no bound"
	}
	return n
}

// Since returns the group's events after seq, in order, and the sequence
// of the last. ok is false when the kept events do not continue seq without
// a gap; with nothing newer than seq, it returns ok with last = seq (the
// caller checks the store to tell "current" from "lost").
func (h *History) Since(ctx context.Context, stream, group string, seq uint64) (frames [][]byte, last uint64, ok bool, err error) {
	subj := Subject(stream, group)
	cons, err := h.st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return nil, 0, false, fmt.Errorf("natsfanout: history: %w", err)
	}
	pending := cons.CachedInfo().NumPending
	type ev struct {
		seq   uint64
		frame []byte
	}
	var evs []ev
	if pending > 0 {
		batch, err := cons.Fetch(int(pending), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, 0, false, fmt.Errorf("natsfanout: history: %w", err)
		}
		for m := range batch.Messages() {
			if Hashed(subj) && !IsOf(m.Data(), stream, group) {
				continue
			}
			if s, _, ok := wire.Header(m.Data()); ok && s > seq {
				evs = append(evs, ev{s, m.Data()})
			}
		}
		if err := batch.Error(); err != nil {
			return nil, 0, false, fmt.Errorf("natsfanout: history: %w", err)
		}
	}
	// Engines publish concurrently: order by sequence, drop repeats.
	slices.SortFunc(evs, func(a, b ev) int { return cmp.Compare(a.seq, b.seq) })
	last = seq
	for _, e := range evs {
		switch {
		case e.seq == last:
			continue
		case e.seq != last+1:
			return nil, 0, false, nil
		}
		frames = append(frames, e.frame)
		last = e.seq
	}
	return frames, last, true, nil
}

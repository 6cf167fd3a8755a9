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
	"github.com/trinehq/trine/internal/subject"
	"github.com/trinehq/trine/streammodule/wire"
)

// History keeps the last events of every group in a JetStream stream that
// captures the event subjects, so that any engine, and through it any
// gateway, can replay a group's events after a sequence, whichever engine
// published them.
type History struct {
	st       jetstream.Stream
	perGroup int
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
	return &History{st: st, perGroup: max(cfg.PerGroup, 1)}, nil
}

func maxBytes(n int64) int64 {
	if n <= 0 {
		return -1 // JetStream's "no bound"
	}
	return n
}

// Since returns the group's events after seq, in order, up to the first
// gap, and the sequence of the last returned (seq when none). A gap is an
// event still on its way to the history (engines publish concurrently, so
// a later event can overtake it): the caller waits for it. ok is false only
// when the history was trimmed past seq, so that what followed seq is gone.
// The caller checks the store to tell "current" from "behind".
func (h *History) Since(ctx context.Context, stream, group string, seq uint64) (frames [][]byte, last uint64, ok bool, err error) {
	// A request can meet JetStream between leaders, or its API busy ("no
	// responders"): ask again a few times before failing.
	wait := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		frames, last, ok, err = h.since(ctx, stream, group, seq)
		if err == nil || attempt == 4 || !jsboot.Transient(err) {
			return frames, last, ok, err
		}
		select {
		case <-ctx.Done():
			return nil, 0, false, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// ev is one event of a group's history.
type ev struct {
	seq   uint64
	frame []byte
}

// read returns the group's events in the history with sequences above
// after, in the order JetStream holds them, how many it holds and the
// oldest sequence among them.
func (h *History) read(ctx context.Context, stream, group string, after uint64) (evs []ev, kept int, oldest uint64, err error) {
	subj := Subject(stream, group)
	cons, err := h.st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("natsfanout: history: %w", err)
	}
	pending := cons.CachedInfo().NumPending
	if pending == 0 {
		return nil, 0, 0, nil
	}
	batch, err := cons.Fetch(int(pending), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("natsfanout: history: %w", err)
	}
	for m := range batch.Messages() {
		if subject.Hashed(subj) && !IsOf(m.Data(), stream, group) {
			continue
		}
		s, _, ok := wire.Header(m.Data())
		if !ok {
			continue
		}
		kept++
		if oldest == 0 || s < oldest {
			oldest = s
		}
		if s > after {
			evs = append(evs, ev{s, m.Data()})
		}
	}
	if err := batch.Error(); err != nil {
		return nil, 0, 0, fmt.Errorf("natsfanout: history: %w", err)
	}
	return evs, kept, oldest, nil
}

// Held returns every event the history holds for the group, by sequence.
func (h *History) Held(ctx context.Context, stream, group string) ([][]byte, error) {
	evs, _, _, err := h.read(ctx, stream, group, 0)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(evs, func(a, b ev) int { return cmp.Compare(a.seq, b.seq) })
	frames := make([][]byte, 0, len(evs))
	for i, e := range evs {
		if i > 0 && e.seq == evs[i-1].seq {
			continue
		}
		frames = append(frames, e.frame)
	}
	return frames, nil
}

// Reset drops the group's history, so that subscribers resuming from it
// resync.
func (h *History) Reset(ctx context.Context, stream, group string) error {
	if err := h.st.Purge(ctx, jetstream.WithPurgeSubject(Subject(stream, group))); err != nil {
		return fmt.Errorf("natsfanout: history: %w", err)
	}
	return nil
}

func (h *History) since(ctx context.Context, stream, group string, seq uint64) (frames [][]byte, last uint64, ok bool, err error) {
	evs, kept, oldest, err := h.read(ctx, stream, group, seq)
	if err != nil {
		return nil, 0, false, err
	}
	// Trimmed past seq: what followed it is gone for good.
	if kept >= h.perGroup && oldest > seq+1 {
		return nil, 0, false, nil
	}
	// Engines publish concurrently: order by sequence, drop repeats, and
	// stop at a gap, which is an event still on its way (a later one
	// overtook it): the subscriber gets it live, or asks again.
	slices.SortFunc(evs, func(a, b ev) int { return cmp.Compare(a.seq, b.seq) })
	last = seq
	for _, e := range evs {
		switch {
		case e.seq == last:
			continue
		case e.seq != last+1:
			return frames, last, true, nil
		}
		frames = append(frames, e.frame)
		last = e.seq
	}
	return frames, last, true, nil
}

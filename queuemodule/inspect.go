package queuemodule

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natsheader"
	"github.com/trinehq/trine/internal/subject"
)

// Functions that show the queues, for operators and the console.
const (
	FnList        = "iii::queue::list"
	FnDeadLetters = "iii::queue::dead_letters"
)

// Bounds of iii::queue::dead_letters: the most messages a page holds, and
// the most payload bytes shown of each (a larger payload is left out,
// with its size). Config.MaxListBytes bounds a page's bytes.
const (
	DeadLettersMaxLimit  = 100
	DeadLettersDataBytes = 4096
)

// QueueStatus is one row of iii::queue::list.
type QueueStatus struct {
	Queue string `json:"queue"`
	Type  string `json:"type"`
	// Depth is the jobs waiting to run, InFlight those running (or
	// waiting for a retry's backoff), Redelivered those given again after
	// a failure or a lapsed ack wait, DeadLetters those in the
	// dead-letter queue.
	Depth       uint64 `json:"depth"`
	InFlight    int    `json:"in_flight"`
	Redelivered int    `json:"redelivered"`
	DeadLetters uint64 `json:"dead_letters"`
}

// DeadLetter is one message of iii::queue::dead_letters.
type DeadLetter struct {
	Seq        uint64 `json:"seq"`
	FunctionID string `json:"function_id"`
	Attempts   int    `json:"attempts"`
	Error      string `json:"error"`
	// Data is the job's payload, when the caller may call its function
	// and it is at most DeadLettersDataBytes; otherwise it is left out,
	// and Hidden or Truncated (with DataBytes) says why. A Hidden one
	// has its Seq only.
	Data      json.RawMessage `json:"data,omitempty"`
	DataBytes int             `json:"data_bytes"`
	Truncated bool            `json:"truncated,omitempty"`
	Hidden    bool            `json:"hidden,omitempty"`
}

// list answers iii::queue::list: every named queue the caller may see
// (QueueEntry), with its figures.
func (m *Module) list(ctx context.Context, c engine.Call) ([]byte, error) {
	all, err := m.figures(ctx)
	if err != nil {
		return nil, err
	}
	out := []QueueStatus{}
	for _, st := range all {
		if m.e.CanCall(c.Grant, QueueEntry(st.Queue)) == nil {
			out = append(out, st)
		}
	}
	return json.Marshal(map[string]any{"queues": out})
}

// QueueEntry is the id a policy allows (expose_functions, or
// allowed_functions) for iii::queue::list to show queue name to a caller:
// "queue::" and the name. A trusted caller sees every queue.
func QueueEntry(name string) string { return "queue::" + name }

// listFor is how long iii::queue::list answers from the figures it read
// last: each read asks JetStream once per queue lane, and every open
// console page asks again and again.
const listFor = 250 * time.Millisecond

// queueCounts are what this engine did with one named queue's jobs.
type queueCounts struct {
	retries, deadLettered atomic.Int64
}

// Counts is what this engine did with one named queue's jobs since it
// started.
type Counts struct {
	// Retries counts the failed attempts given another try, and
	// DeadLettered the jobs moved to the dead-letter queue.
	Retries, DeadLettered int64
}

// Counts returns every named queue's Counts.
func (m *Module) Counts() map[string]Counts {
	out := make(map[string]Counts, len(m.counts))
	for name, c := range m.counts {
		out[name] = Counts{Retries: c.retries.Load(), DeadLettered: c.deadLettered.Load()}
	}
	return out
}

// Figures are every named queue's figures, as iii::queue::list has them
// (all queues, whatever a caller's policy), read from JetStream at most
// once per listFor.
func (m *Module) Figures(ctx context.Context) ([]QueueStatus, error) {
	if !m.isOpen() {
		return nil, errWaiting(FnList)
	}
	return m.figures(ctx)
}

// figures are every named queue's figures, read at most once per listFor.
func (m *Module) figures(ctx context.Context) ([]QueueStatus, error) {
	m.listMu.Lock()
	defer m.listMu.Unlock()
	if m.listed != nil && time.Since(m.listedAt) < listFor {
		return m.listed, nil
	}
	out, err := m.readFigures(ctx)
	if err != nil {
		return nil, err
	}
	m.listed, m.listedAt = out, time.Now()
	return out, nil
}

// readFigures asks JetStream for every named queue's figures.
func (m *Module) readFigures(ctx context.Context) ([]QueueStatus, error) {
	qs, err := m.js.Stream(ctx, StreamQueues)
	if err != nil {
		return nil, engine.Errorf(codes.Unavailable, "%s: %v", FnList, err)
	}
	dlq, err := m.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return nil, engine.Errorf(codes.Unavailable, "%s: %v", FnList, err)
	}
	out := []QueueStatus{}
	for _, name := range slices.Sorted(maps.Keys(m.queues)) {
		q := m.queues[name]
		st := QueueStatus{Queue: name, Type: q.Type}
		if st.Type == "" {
			st.Type = TypeStandard
		}
		lanes := []string{"s"}
		if q.Type == TypeFIFO {
			lanes = lanes[:0]
			for i := range q.Concurrency {
				lanes = append(lanes, "p"+strconv.Itoa(i))
			}
		}
		for _, l := range lanes {
			c, err := qs.Consumer(ctx, consumerName("Q", name, l))
			if err != nil {
				continue // not consumed yet
			}
			info, err := c.Info(ctx)
			if err != nil {
				return nil, engine.Errorf(codes.Unavailable, "%s: queue %s: %v", FnList, name, err)
			}
			st.Depth += info.NumPending
			st.InFlight += info.NumAckPending
			st.Redelivered += info.NumRedelivered
		}
		subj := subjDLQ + subject.Token(name)
		info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			return nil, engine.Errorf(codes.Unavailable, "%s: queue %s: %v", FnList, name, err)
		}
		st.DeadLetters = info.State.Subjects[subj]
		out = append(out, st)
	}
	return out, nil
}

// deadLetters answers iii::queue::dead_letters {queue, limit?, after?}:
// the queue's dead letters in order, after the sequence after, without
// taking them out of the dead-letter queue.
func (m *Module) deadLetters(ctx context.Context, c engine.Call) ([]byte, error) {
	var in struct {
		Queue *string `json:"queue"`
		Limit *int    `json:"limit"`
		After uint64  `json:"after"`
	}
	if err := json.Unmarshal(c.Payload, &in); err != nil || in.Queue == nil || *in.Queue == "" {
		return nil, engine.Errorf(codes.InvalidArgument, "%s: want {queue, limit?, after?}", FnDeadLetters)
	}
	name := *in.Queue
	if err := engine.ValidateName("queue", name, 2*DefaultMaxTopicLen); err != nil {
		return nil, err
	}
	limit := 20
	if in.Limit != nil {
		if *in.Limit < 1 || *in.Limit > DeadLettersMaxLimit {
			return nil, engine.Errorf(codes.InvalidArgument, "%s: limit must be 1 to %d", FnDeadLetters, DeadLettersMaxLimit)
		}
		limit = *in.Limit
	}
	st, err := m.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return nil, engine.Errorf(codes.Unavailable, "%s: %v", FnDeadLetters, err)
	}
	subj := subjDLQ + subject.Token(name)
	out := []DeadLetter{}
	more, size := false, 0
	if in.After == math.MaxUint64 {
		return json.Marshal(map[string]any{"queue": name, "messages": out, "more": false})
	}
	for seq := in.After + 1; ; {
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, engine.Errorf(codes.Unavailable, "%s: %v", FnDeadLetters, err)
		}
		seq = msg.Sequence + 1
		if q, err := natsheader.Decode(msg.Header.Get(hQueue)); err != nil || q != name {
			continue // a long name that hashed alike: not this queue's
		}
		if len(out) == limit {
			more = true
			break
		}
		fn, _ := natsheader.Decode(msg.Header.Get(hFunction))
		why, _ := natsheader.Decode(msg.Header.Get(hError))
		n, _ := strconv.Atoi(msg.Header.Get(hAttempts))
		d := DeadLetter{Seq: msg.Sequence, FunctionID: fn, Attempts: n, Error: why, DataBytes: len(msg.Data)}
		switch {
		case m.e.CanCall(c.Grant, fn) != nil:
			// Tells no more than calling would: that it is there.
			d = DeadLetter{Seq: msg.Sequence, Hidden: true}
		case len(msg.Data) > DeadLettersDataBytes || !json.Valid(msg.Data):
			d.Truncated = true
		default:
			d.Data = msg.Data
		}
		n = len(d.FunctionID) + len(d.Error) + len(d.Data) + 128
		if len(out) > 0 && size+n > m.cfg.MaxListBytes {
			more = true
			break
		}
		out = append(out, d)
		size += n
	}
	return json.Marshal(map[string]any{"queue": name, "messages": out, "more": more})
}

// mayRedrive checks that grant may call the function of every dead
// letter of queue name.
func (m *Module) mayRedrive(ctx context.Context, grant *engine.Grant, name string) error {
	st, err := m.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return engine.Errorf(codes.Unavailable, "%s: %v", FnRedrive, err)
	}
	subj := subjDLQ + subject.Token(name)
	seen := map[string]bool{}
	for seq := uint64(1); ; {
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return engine.Errorf(codes.Unavailable, "%s: %v", FnRedrive, err)
		}
		seq = msg.Sequence + 1
		fn, _ := natsheader.Decode(msg.Header.Get(hFunction))
		if seen[fn] {
			continue
		}
		seen[fn] = true
		if err := m.e.CanCall(grant, fn); err != nil {
			return engine.Errorf(codes.Forbidden, "%s: queue %s holds dead letters of a function this caller may not call", FnRedrive, name)
		}
	}
}

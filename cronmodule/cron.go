// Package cronmodule is iii's cron: the cron trigger type, whose schedules
// fire once per fleet. Every engine with a worker that registered a cron
// trigger keeps its schedule; at each scheduled time they all try to claim
// the fire, and only the one whose claim is first runs the function. With
// JetStream (JetStreamClaims) a claim is a message whose Nats-Msg-Id is the
// job and the scheduled time, so JetStream's duplicate detection lets
// exactly one through: no lease and no leader election.
//
// Concurrency: a Module is safe for concurrent use. It starts one goroutine
// per registered cron trigger (its schedule) and one per job run;
// unregistering a trigger stops its schedule, and Close stops every
// schedule and waits for the runs in progress.
package cronmodule

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/defaults"
	"github.com/trinehq/trine/triggerapi"
)

// TriggerCron is the trigger type.
const TriggerCron = "cron"

// Defaults for Config.
const (
	// DefaultLateness is how late a fire may run: a scheduled time missed
	// by more (the engine was paused or down) is skipped.
	DefaultLateness   = 5 * time.Second
	DefaultClaimLimit = 5 * time.Second
)

// Claimer decides which engine runs a fire: Claim returns true for exactly
// one caller per (job, scheduled time) across the fleet.
type Claimer interface {
	Claim(ctx context.Context, job string, scheduled time.Time) (bool, error)
}

// LocalClaims is the Claimer of a single engine: every claim succeeds.
type LocalClaims struct{}

// Claim implements Claimer.
func (LocalClaims) Claim(context.Context, string, time.Time) (bool, error) { return true, nil }

// Unavailable is the Claimer of an engine that cannot claim fires (its
// NATS has no JetStream): cron triggers are refused with Err.
type Unavailable struct{ Err error }

// Claim implements Claimer.
func (u Unavailable) Claim(context.Context, string, time.Time) (bool, error) { return false, u.Err }

// Waiting is the Claimer of an engine still waiting for JetStream: cron
// triggers are accepted, and their fires are skipped until SetClaims
// gives the module claims that work.
type Waiting struct{ Err error }

// Claim implements Claimer.
func (w Waiting) Claim(context.Context, string, time.Time) (bool, error) { return false, w.Err }

// Config configures a Module.
type Config struct {
	// Claims decides which engine runs each fire (SetClaims replaces
	// it). Default LocalClaims.
	Claims Claimer
	// Lateness: see DefaultLateness.
	Lateness time.Duration
	// CallTimeout bounds each call of a job's function; zero means the
	// engine's default timeout.
	CallTimeout time.Duration
	// MaxListBytes bounds a page of cron::list, roughly: it ends early,
	// with more, past it (--max-list-bytes). Default DefaultMaxListBytes.
	MaxListBytes int
	Logger       *slog.Logger
}

// Module is the cron module.
type Module struct {
	cfg   Config
	log   *slog.Logger
	fails *engine.FireLog // skipped and failed fires, per owner
	e     *engine.Engine

	mu     sync.Mutex
	claims Claimer
	jobs   *engine.TriggerSet[*job]

	fires atomic.Int64
	skips [len(SkipReasons)]atomic.Int64
}

// SkipReasons are why this engine skipped a fire that came due, the keys
// of Stats.Skips: too late (the engine was paused), the owner past its
// fire rate, the job's previous run still going, claims waiting for
// JetStream, the claim failing, the condition function saying no (or
// failing). A fire another engine claimed is not a skip.
var SkipReasons = [...]string{"late", "fire_rate", "running", "no_jetstream", "claim_failed", "condition"}

const (
	skipLate = iota
	skipFireRate
	skipRunning
	skipNoJetStream
	skipClaimFailed
	skipCondition
)

// Stats is a snapshot of the module's counters on this engine.
type Stats struct {
	// Fires counts the fires this engine ran (it won their claim).
	Fires int64
	// Skips counts the fires skipped, by SkipReasons.
	Skips map[string]int64
}

// Stats returns the module's counters.
func (m *Module) Stats() Stats {
	st := Stats{Fires: m.fires.Load(), Skips: make(map[string]int64, len(SkipReasons))}
	for i, r := range SkipReasons {
		st.Skips[r] = m.skips[i].Load()
	}
	return st
}

type job struct {
	t       engine.Trigger
	cfg     triggerConfig
	sched   schedule
	stop    chan struct{}
	running atomic.Bool
	// For cron::list: the last fire that came due and the next one (Unix
	// ms, 0 for none), and the error of the last run on this engine.
	last, next atomic.Int64
	lastErr    atomic.Pointer[string]
}

type triggerConfig struct {
	Expression          *string `json:"expression"`
	ConditionFunctionID string  `json:"condition_function_id"`
	// Timezone is the IANA zone the expression is read in; "" is UTC.
	Timezone string `json:"timezone"`
}

// New returns the module. It starts nothing.
func New(cfg Config) (*Module, error) {
	if cfg.Claims == nil {
		cfg.Claims = LocalClaims{}
	}
	defaults.Positive(&cfg.Lateness, DefaultLateness)
	defaults.Positive(&cfg.MaxListBytes, DefaultMaxListBytes)
	defaults.Logger(&cfg.Logger)
	return &Module{cfg: cfg, log: cfg.Logger, fails: engine.NewFireLog(cfg.Logger, 0), claims: cfg.Claims, jobs: engine.NewTriggerSet[*job]("the cron module")}, nil
}

// SetClaims makes c decide the fires from now on: an engine starts with
// Waiting while it waits for JetStream, then sets the JetStream claims
// once they are open (or Unavailable if JetStream refuses them).
func (m *Module) SetClaims(c Claimer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claims = c
}

// Register registers the cron trigger type and cron::list on e.
func (m *Module) Register(e *engine.Engine) error {
	m.e = e
	if err := e.RegisterFunction(FnList, "List cron triggers with their schedule, last and next fire; {limit? at most 1000, after? a trigger id}; answers {jobs, more}.",
		engine.HandlerFunc(m.list)); err != nil {
		return err
	}
	return e.RegisterTriggerType(TriggerCron, "Runs a function on a schedule, once per fleet (config: expression with 6 fields sec min hour dom month dow, or 7 with year, read in UTC; timezone?, an IANA zone name; condition_function_id?).", provider{m})
}

// Close stops every schedule and waits for the running jobs. It may be
// called more than once.
func (m *Module) Close() error {
	m.jobs.Close()
	return nil
}

type provider struct{ m *Module }

func (p provider) RegisterTrigger(_ context.Context, t engine.Trigger) error {
	var cfg triggerConfig
	raw := bytes.TrimSpace(t.Config)
	if len(raw) == 0 || raw[0] != '{' {
		return engine.Errorf(codes.InvalidArgument, "cron trigger %q: config must be a JSON object with expression", t.ID)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return engine.Errorf(codes.InvalidArgument, "cron trigger %q: bad config: %v", t.ID, err)
	}
	if cfg.Expression == nil {
		return engine.Errorf(codes.InvalidArgument, "cron trigger %q: config needs expression", t.ID)
	}
	if err := engine.ValidateCondition(cfg.ConditionFunctionID); err != nil {
		return err
	}
	s, err := parseSchedule(*cfg.Expression, cfg.Timezone)
	if err != nil {
		return engine.Errorf(codes.InvalidArgument, "cron trigger %q: %v", t.ID, err)
	}
	if s.next(time.Now()).IsZero() {
		return engine.Errorf(codes.InvalidArgument, "cron trigger %q: expression %q never fires", t.ID, *cfg.Expression)
	}
	m := p.m
	m.mu.Lock()
	u, unavailable := m.claims.(Unavailable)
	m.mu.Unlock()
	if unavailable {
		return engine.Errorf(codes.Unavailable, "cron trigger %q: schedules cannot be claimed once per fleet: %v", t.ID, u.Err)
	}
	j := &job{t: t, cfg: cfg, sched: s, stop: make(chan struct{})}
	return m.jobs.Put(t.ID, j, func() { close(j.stop) }, func() { m.run(j) })
}

func (p provider) UnregisterTrigger(_ context.Context, t engine.Trigger) error {
	p.m.jobs.Remove(t.ID)
	return nil
}

// run keeps j's schedule until it stops.
func (m *Module) run(j *job) {
	at := j.sched.next(time.Now())
	for !at.IsZero() {
		j.next.Store(at.UnixMilli())
		timer := time.NewTimer(time.Until(at))
		select {
		case <-j.stop:
			timer.Stop()
			return
		case <-timer.C:
		}
		j.last.Store(at.UnixMilli())
		now := time.Now()
		if late := now.Sub(at); late > m.cfg.Lateness {
			// Paused or starved: skip what was missed (documented).
			m.skips[skipLate].Add(1)
			m.fails.Warn(j.t, "cron fire skipped: too late", "scheduled_time", at, "late", late)
		} else {
			m.fire(j, at, now)
		}
		at = j.sched.next(at)
		if n := time.Now(); at.Before(n.Add(-m.cfg.Lateness)) {
			at = j.sched.next(n)
		}
	}
	j.next.Store(0)
	m.log.Info("cron trigger has no more fires", "trigger_id", j.t.ID)
}

// fire claims the fire at and, if this engine won it, runs the job. A job
// still running from an earlier fire makes this engine leave the fire to
// the others, and so does an owner past its fire rate: such a fire is not
// claimed, so it costs the fleet nothing.
func (m *Module) fire(j *job, at, now time.Time) {
	if err := m.e.FireAllowed(j.t); err != nil {
		m.skips[skipFireRate].Add(1)
		m.fails.Warn(j.t, "cron fire left to other engines: its owner is past its fire rate", "scheduled_time", at, "error", err)
		return
	}
	if !j.running.CompareAndSwap(false, true) {
		m.skips[skipRunning].Add(1)
		m.fails.Warn(j.t, "cron fire left to other engines: the job's previous run is still going", "scheduled_time", at)
		return
	}
	m.mu.Lock()
	claims := m.claims
	m.mu.Unlock()
	if w, ok := claims.(Waiting); ok {
		j.running.Store(false)
		m.skips[skipNoJetStream].Add(1)
		m.log.Debug("cron fire skipped: waiting for JetStream", "trigger_id", j.t.ID, "scheduled_time", at, "error", w.Err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultClaimLimit)
	won, err := claims.Claim(ctx, claimJob(j.t), at)
	cancel()
	if err != nil || !won {
		j.running.Store(false)
		if err != nil {
			m.skips[skipClaimFailed].Add(1)
			m.fails.Error(j.t, "cron fire not claimed", "scheduled_time", at, "error", err)
		}
		return
	}
	payload, _ := json.Marshal(triggerapi.CronEvent{Trigger: "cron", JobID: j.t.ID, ScheduledTime: at.UTC().Format(time.RFC3339), ActualTime: now.UTC().Format(time.RFC3339Nano)})
	started := m.jobs.Go(func() {
		defer j.running.Store(false)
		if ok, err := m.e.Condition(context.Background(), j.t, j.cfg.ConditionFunctionID, engine.Call{Payload: payload, Timeout: m.cfg.CallTimeout}); !ok {
			m.skips[skipCondition].Add(1)
			if err != nil {
				m.fails.Warn(j.t, "cron condition failed: fire skipped", "function_id", j.cfg.ConditionFunctionID, "error", err)
			}
			return
		}
		m.fires.Add(1)
		_, err := m.e.Fire(context.Background(), j.t, engine.Call{FunctionID: j.t.FunctionID, Payload: payload, Metadata: j.t.Metadata, Timeout: m.cfg.CallTimeout})
		if err != nil {
			m.fails.Warn(j.t, "cron job failed", "function_id", j.t.FunctionID, "scheduled_time", at, "error", err)
			msg := engine.AsError(err).Message
			msg = strings.ToValidUTF8(msg[:min(len(msg), 512)], "")
			j.lastErr.Store(&msg)
		} else {
			j.lastErr.Store(nil)
		}
	})
	if !started {
		j.running.Store(false)
	}
}

// claimJob names the job a fire claims across the fleet: the trigger id
// with a digest of what it runs (its function and config). The replicas
// of one worker register the same trigger on several engines and share
// the claim, so it fires once; a trigger of another owner that took the
// same id on another engine runs something else and never takes a fire
// from it.
func claimJob(t engine.Trigger) string {
	h := sha256.New()
	h.Write([]byte(t.FunctionID))
	h.Write([]byte{0})
	h.Write(t.Config)
	return t.ID + "#" + hex.EncodeToString(h.Sum(nil)[:12])
}

package jsboot

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// States of a Part, as /readyz shows them.
const (
	StateStarting = "starting"              // its first attempt is under way
	StateWaiting  = "waiting_for_jetstream" // JetStream is missing or booting: retried
	StateUp       = "up"
	StateFailed   = "failed" // JetStream refused it (a bad configuration): not retried
)

// Part is an optional part of an engine that needs JetStream: cron's
// claims, the queues.
type Part struct {
	Name string
	// Open makes one attempt to bring the part up, bounded by ctx. An
	// error that Transient accepts is retried.
	Open func(ctx context.Context) error
}

// Backoff between the attempts of a part, and the bound of each attempt.
// The first attempt is short, so that the engine learns at once whether
// JetStream answers; later ones give a forming cluster time.
const (
	FirstAttempt = 500 * time.Millisecond
	laterAttempt = 10 * time.Second
	minBackoff   = 250 * time.Millisecond
	maxBackoff   = 5 * time.Second
)

// Starter brings parts up in the background, retrying each with backoff
// while JetStream is missing or booting, so that the engine never waits on
// them to start. It logs one Warn when a part starts waiting, one Info when
// it is up, one Error when JetStream refuses it.
//
// Run starts one goroutine per part and returns once they have all
// stopped; the other methods are safe for concurrent use.
type Starter struct {
	log   *slog.Logger
	parts []Part

	mu      sync.Mutex
	states  map[string]string
	pending int           // parts whose first attempt has not ended
	settled chan struct{} // closed when pending reaches 0
}

// NewStarter returns a Starter of parts; it starts nothing. A nil log
// discards.
func NewStarter(log *slog.Logger, parts ...Part) *Starter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Starter{log: log, parts: parts, states: make(map[string]string), pending: len(parts), settled: make(chan struct{})}
	for _, p := range parts {
		s.states[p.Name] = StateStarting
	}
	if len(parts) == 0 {
		close(s.settled)
	}
	return s
}

// Run brings every part up and returns nil when each is up or failed, or
// when ctx ends.
func (s *Starter) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, p := range s.parts {
		wg.Go(func() { s.bringUp(ctx, p) })
	}
	wg.Wait()
	return nil
}

// Settled is closed once every part's first attempt has ended (or Run's
// ctx did): with JetStream at hand the parts are up by then.
func (s *Starter) Settled() <-chan struct{} { return s.settled }

// States maps each part's name to its state.
func (s *Starter) States() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.states)
}

func (s *Starter) bringUp(ctx context.Context, p Part) {
	first := true
	defer func() {
		if first {
			s.settle()
		}
	}()
	bound, wait := FirstAttempt, minBackoff
	for {
		actx, cancel := context.WithTimeout(ctx, bound)
		err := p.Open(actx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			s.set(p.Name, StateUp)
			s.log.Info("optional part up", "part", p.Name, "state", StateUp)
			return
		case !Transient(err):
			s.set(p.Name, StateFailed)
			s.log.Error("optional part cannot start: JetStream refused it; the engine serves everything else", "part", p.Name, "state", StateFailed, "error", err)
			return
		}
		if s.set(p.Name, StateWaiting) != StateWaiting {
			s.log.Warn("optional part waits for JetStream, which the engine's NATS does not offer yet; the engine serves everything else and retries",
				"part", p.Name, "state", StateWaiting, "error", err)
		}
		if first {
			first = false
			s.settle()
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		bound, wait = laterAttempt, min(2*wait, maxBackoff)
	}
}

// set sets a part's state and returns the one before.
func (s *Starter) set(name, state string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.states[name]
	s.states[name] = state
	return old
}

func (s *Starter) settle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending--; s.pending == 0 {
		close(s.settled)
	}
}

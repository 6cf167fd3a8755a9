package loadgen

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natsembed"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/store"
)

// Stack is an engine with the StreamModule (memory store) publishing on an
// embedded NATS server, all in this process: what bench/storm and
// bench/presence put a gateway in front of.
type Stack struct {
	NATS   *natsembed.Server
	Events *nats.Conn // a second connection, for a gateway's events
	Engine *engine.Engine
	Module *streammodule.Module
	cancel context.CancelFunc
	done   chan struct{}
}

// StartStack starts a Stack; jetStreamDir, if set, turns JetStream on.
// Close stops it.
func StartStack(name, jetStreamDir string) (*Stack, error) {
	ns, err := natsembed.Start(natsembed.Options{Name: name, JetStreamDir: jetStreamDir})
	if err != nil {
		return nil, err
	}
	s := &Stack{NATS: ns, done: make(chan struct{})}
	fail := func(err error) (*Stack, error) {
		s.Close()
		return nil, err
	}
	if s.Events, err = nats.Connect("", nats.InProcessServer(ns.NS)); err != nil {
		return fail(err)
	}
	if s.Engine, err = engine.New(engine.Config{DefaultTimeout: 30 * time.Second}); err != nil {
		return fail(err)
	}
	s.Module, err = streammodule.New(streammodule.Config{
		OpenStore: func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil },
		Publisher: natsfanout.NewPublisher(ns.Conn),
	})
	if err != nil {
		return fail(err)
	}
	if err := s.Module.Register(s.Engine); err != nil {
		return fail(err)
	}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go func() { _ = s.Engine.Run(ctx); close(s.done) }()
	return s, nil
}

// Close stops the engine, the module and NATS.
func (s *Stack) Close() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	if s.Module != nil {
		_ = s.Module.Close()
	}
	if s.Events != nil {
		s.Events.Close()
	}
	s.NATS.Close()
}

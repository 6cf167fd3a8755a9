package main

import (
	"fmt"
	"log/slog"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natsembed"
	"github.com/trinehq/trine/statemodule"
	"github.com/trinehq/trine/statemodule/statebus"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/jsstore"
)

// state is the state module of an engine, on the same store adapter as
// streams but in a location of its own: DATA_DIR/state, or the JetStream
// stream TRINE_STATE. Its events travel on the engine's NATS connection, so
// triggers on every engine of a fleet see every change.
type state struct {
	module *statemodule.Module
	bus    *statebus.Bus
}

func startState(cfg engineConfig, eng *engine.Engine, ns *natsembed.Server, lists *store.Lists, log *slog.Logger) (*state, error) {
	open := storeOpener(cfg, ns, log, "state", jsstore.Config{Stream: "TRINE_STATE", Prefix: "trine.statekv"})
	bus := statebus.New(ns.Conn)
	mod, err := statemodule.New(statemodule.Config{
		OpenStore:     open,
		Publish:       bus.Publish,
		MaxEventBytes: bus.MaxPayload(),
		MaxValueBytes: max(1, min(cfg.StateMaxValue, (cfg.MaxMessageBytes-resultHeadroom)/2)),
		Lists:         lists,
		Logger:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("open state store: %w", err)
	}
	s := &state{module: mod, bus: bus}
	if err := mod.Register(eng); err != nil {
		s.close()
		return nil, fmt.Errorf("register state module: %w", err)
	}
	if err := bus.Receive(mod.Deliver); err != nil {
		s.close()
		return nil, fmt.Errorf("receive state events: %w", err)
	}
	return s, nil
}

// close stops the events and releases the module, flushing its store.
func (s *state) close() {
	s.bus.Close()
	_ = s.module.Close()
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/console"
	"github.com/trinehq/trine/cronmodule"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/httptrigger"
	"github.com/trinehq/trine/internal/jsboot"
	"github.com/trinehq/trine/internal/natsembed"
	"github.com/trinehq/trine/pubsubmodule"
	"github.com/trinehq/trine/queuemodule"
	"github.com/trinehq/trine/statemodule"
	"github.com/trinehq/trine/statemodule/statebus"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/jsstore"
)

// stateJetStream is where --store jetstream keeps state.
var stateJetStream = jsstore.Config{Stream: "TRINE_STATE", Prefix: "trine.statekv"}

// engineModules are the engine's modules, built from its configuration.
// Each is an engine.Module; the fields name the ones other parts of the
// engine reach (the gateway reads streams, the JetStream starter opens
// cron and queues, the HTTP listener serves routes, the worker listeners
// serve the hub's channels).
type engineModules struct {
	contracts *engineContracts
	streams   *streammodule.Module
	state     stateModule
	pubsub    *pubsubmodule.Module
	crons     *cronmodule.Module
	queues    *queuemodule.Module
	hub       *channels.Hub
	routes    *httptrigger.Provider
}

// list is every module in the order they register; they close in the
// reverse order.
func (m *engineModules) list() []engine.Module {
	return []engine.Module{m.contracts, m.streams, m.state, m.pubsub, m.crons, m.queues, m.hub, m.routes}
}

// newEngineModules builds every module; none is registered yet. On an
// error the ones built are closed.
func newEngineModules(cfg engineConfig, ns *natsembed.Server, log *slog.Logger) (_ *engineModules, err error) {
	m := &engineModules{}
	var built []engine.Module
	defer func() {
		if err != nil {
			_ = engine.Modules(built).Close()
		}
	}()
	// One bound on list answers for stream::* and state::*.
	lists := store.NewLists(listBytes(cfg), cfg.MaxListBytesTotal)
	if m.contracts, err = openContracts(cfg, ns, log); err != nil {
		return nil, err
	}
	built = append(built, m.contracts)
	cfg.Stream.Contracts, cfg.State.Contracts = m.contracts.streams, m.contracts.state
	if m.streams, err = newStreamModule(cfg, ns, lists, log); err != nil {
		return nil, err
	}
	built = append(built, m.streams)
	// Before any write: YAML streams: are checked against what is stored.
	if err = defineStreamsAtStart(m.streams, m.contracts.streams, cfg.Contracts.Streams, jetStreamBootTimeout+cfg.Contracts.Limits.DefineTimeout, log); err != nil {
		return nil, err
	}
	if m.state, err = newStateModule(cfg, ns, lists, log); err != nil {
		return nil, err
	}
	built = append(built, m.state)
	pc := cfg.PubSub
	pc.Conn, pc.CallTimeout, pc.Logger = ns.Conn, cfg.Engine.DefaultTimeout, log
	if m.pubsub, err = pubsubmodule.New(pc); err != nil {
		return nil, fmt.Errorf("pubsub: %w", err)
	}
	built = append(built, m.pubsub)
	cc := cfg.Cron
	cc.Claims, cc.CallTimeout, cc.MaxListBytes, cc.Logger = cronmodule.Waiting{Err: errCronWaiting}, cfg.Engine.DefaultTimeout, listBytes(cfg), log
	if m.crons, err = cronmodule.New(cc); err != nil {
		return nil, fmt.Errorf("cron: %w", err)
	}
	built = append(built, m.crons)
	if m.queues, err = newQueueModule(cfg, ns, log); err != nil {
		return nil, err
	}
	built = append(built, m.queues)
	hc := cfg.Channels
	hc.AllowedOrigins, hc.AllowedHosts, hc.Logger = cfg.AllowedOrigins, cfg.AllowedHosts, log
	if m.hub, err = channels.New(hc); err != nil {
		return nil, fmt.Errorf("channels: %w", err)
	}
	built = append(built, m.hub)
	tc := cfg.HTTP
	tc.Reserved, tc.Logger, tc.TracerProvider = []string{"/healthz", "/readyz", "/metrics", "/schemas", console.Path}, log, cfg.OTel.provider
	if cfg.HTTPStreaming {
		tc.Channels = m.hub
	}
	if m.routes, err = httptrigger.New(tc); err != nil {
		return nil, fmt.Errorf("http triggers: %w", err)
	}
	return m, nil
}

// optionalParts are the parts that need JetStream, which the engine never
// waits for: cron's claims and the queues' streams.
func (m *engineModules) optionalParts(cfg engineConfig, ns *natsembed.Server) []jsboot.Part {
	return []jsboot.Part{cronPart(cfg, ns, m.crons), {Name: "queues", Open: m.queues.Open}}
}

// stateModule is the state module with the bus that carries its events
// to every engine of a fleet.
type stateModule struct {
	*statemodule.Module
	bus *statebus.Bus
}

// newStateModule opens the state module on the same store adapter as
// streams but in a location of its own: DATA_DIR/state, or the JetStream
// stream TRINE_STATE. Its events travel on the engine's NATS connection,
// so triggers on every engine of a fleet see every change.
func newStateModule(cfg engineConfig, ns *natsembed.Server, lists *store.Lists, log *slog.Logger) (stateModule, error) {
	open := storeOpener(cfg, ns, log, "state", stateJetStream)
	bus := statebus.New(ns.Conn)
	c := cfg.State
	c.OpenStore, c.Publish, c.MaxEventBytes, c.Lists, c.Logger = open, bus.Publish, bus.MaxPayload(), lists, log
	c.TracerProvider = cfg.OTel.provider
	c.MaxValueBytes = max(1, min(c.MaxValueBytes, (cfg.MaxMessageBytes-resultHeadroom)/2))
	mod, err := statemodule.New(c)
	if err != nil {
		return stateModule{}, fmt.Errorf("open state store: %w", err)
	}
	return stateModule{mod, bus}, nil
}

// Register registers the module, then receives the fleet's state events.
func (s stateModule) Register(e *engine.Engine) error {
	if err := s.Module.Register(e); err != nil {
		return err
	}
	if err := s.bus.Receive(s.Deliver); err != nil {
		return fmt.Errorf("receive state events: %w", err)
	}
	return nil
}

// Close stops the events and releases the module, flushing its store.
func (s stateModule) Close() error {
	s.bus.Close()
	return s.Module.Close()
}

// errCronWaiting is why cron fires are skipped until cron's JetStream
// stream is open.
var errCronWaiting = errors.New("cron waits for JetStream, which the engine's NATS does not offer yet (GET /readyz shows when it is up)")

// cronPart opens the JetStream stream that makes each cron fire run once
// per fleet. Until then cron triggers are accepted and their fires
// skipped; if JetStream refuses the stream, they are refused, saying why.
func cronPart(cfg engineConfig, ns *natsembed.Server, crons *cronmodule.Module) jsboot.Part {
	return jsboot.Part{Name: "cron", Open: func(ctx context.Context) error {
		c, err := cronmodule.OpenJetStreamClaims(ctx, ns.Conn, cfg.Store.Replicas)
		if err != nil {
			if !jsboot.Transient(err) {
				crons.SetClaims(cronmodule.Unavailable{Err: err})
			}
			return err
		}
		crons.SetClaims(c)
		return nil
	}}
}

package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Engines on one NATS serve the same streams and state: a write through
// any of them is published to every gateway, and any of them answers a
// gateway's snapshot. With a store of its own (file, memory) each engine
// would hold a different copy, so an engine announces its store on
// storeHelloSubject and refuses to start beside an engine whose store is
// not shared, or with one of its own beside any engine.
const storeHelloSubject = "trine.engine.store"

// storeHelloWait is how long a starting engine collects the answers of the
// engines already on its NATS.
const storeHelloWait = 500 * time.Millisecond

// storeHello is what an engine announces and answers.
type storeHello struct {
	ID    string `json:"id"`
	Store string `json:"store"`
	GRPC  string `json:"grpc"`
}

// shared reports whether two engines may share a NATS: only when both keep
// their streams and state in JetStream.
func (h storeHello) shared(o storeHello) bool {
	return h.Store == "jetstream" && o.Store == "jetstream"
}

// conflict is the refusal, naming the fix.
func (h storeHello) conflict(o storeHello) error {
	return fmt.Errorf("another engine (grpc %s, --store %s) uses the same NATS, and engines on one NATS serve the same streams and state: "+
		"this one (--store %s) would answer from a different store and its writes would reach no client of the other; "+
		"start every engine of a fleet with --store jetstream (see docs/fleet.md), or give each engine a NATS of its own", o.GRPC, o.Store, h.Store)
}

// announceStore answers the store announcements of engines that start
// later on nc, logging an error for those this engine cannot share a NATS
// with (they refuse to start); and, when probe is set (the NATS is not
// this engine's own embedded one), asks the engines already there and
// refuses to start beside one it cannot share the NATS with. The returned
// function stops answering.
func announceStore(nc *nats.Conn, store, grpcAddr string, probe bool, log *slog.Logger) (stop func(), err error) {
	var id [8]byte
	_, _ = rand.Read(id[:])
	me := storeHello{ID: hex.EncodeToString(id[:]), Store: store, GRPC: grpcAddr}
	mine, err := json.Marshal(me)
	if err != nil {
		return nil, err
	}
	sub, err := nc.Subscribe(storeHelloSubject, func(m *nats.Msg) {
		var o storeHello
		if json.Unmarshal(m.Data, &o) != nil || o.ID == me.ID {
			return
		}
		if !me.shared(o) {
			log.Error("an engine that cannot share this NATS tried to start; it refuses to", "its_grpc", o.GRPC, "its_store", o.Store, "store", me.Store,
				"fix", "start every engine of a fleet with --store jetstream")
		}
		if m.Reply != "" {
			_ = m.Respond(mine)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("announce the store on NATS: %w", err)
	}
	stop = func() { _ = sub.Unsubscribe() }
	if !probe {
		return stop, nil
	}
	inbox := nc.NewInbox()
	replies, err := nc.SubscribeSync(inbox)
	if err != nil {
		stop()
		return nil, fmt.Errorf("announce the store on NATS: %w", err)
	}
	defer func() { _ = replies.Unsubscribe() }()
	// Both subscriptions are in place before the announcement: of two
	// engines starting together, each hears the other.
	err = nc.Flush()
	if err == nil {
		err = nc.PublishRequest(storeHelloSubject, inbox, mine)
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("announce the store on NATS: %w", err)
	}
	deadline := time.Now().Add(storeHelloWait)
	for {
		m, err := replies.NextMsg(time.Until(deadline))
		if err != nil { // the wait is over
			return stop, nil
		}
		var o storeHello
		if json.Unmarshal(m.Data, &o) != nil || o.ID == me.ID {
			continue
		}
		if !me.shared(o) {
			stop()
			return nil, me.conflict(o)
		}
	}
}

// Package statebus carries the state module's change events between the
// engines of a fleet over NATS, so that a state trigger registered on any
// engine fires for a write made through any other.
//
// Concurrency: a Bus is safe for concurrent use. Receive's callback runs on
// the NATS client's goroutine and must not block; Close unsubscribes. The
// package starts no goroutines of its own.
package statebus

import (
	"github.com/nats-io/nats.go"
)

// Subject carries every state event.
const Subject = "trine.state.event"

// Bus publishes and receives state events on one NATS connection.
type Bus struct {
	nc  *nats.Conn
	sub *nats.Subscription
}

// New returns a Bus on nc.
func New(nc *nats.Conn) *Bus { return &Bus{nc: nc} }

// TraceparentHeader is the NATS header of the traceparent of the write
// that made an event.
const TraceparentHeader = "traceparent"

// Publish sends an event to every engine, this one included, with
// traceparent in its headers when it is not "". It is
// statemodule.Config.Publish.
func (b *Bus) Publish(event []byte, traceparent string) error {
	if traceparent == "" {
		return b.nc.Publish(Subject, event)
	}
	return b.nc.PublishMsg(&nats.Msg{Subject: Subject, Data: event, Header: nats.Header{TraceparentHeader: []string{traceparent}}})
}

// MaxPayload is the largest event the server carries.
func (b *Bus) MaxPayload() int { return int(b.nc.MaxPayload()) }

// Receive hands every event, in the order of each publisher, with its
// traceparent ("" when it has none), to deliver
// (statemodule.Module.Deliver) until Close. deliver must not block: the
// module queues events per trigger.
func (b *Bus) Receive(deliver func(event []byte, traceparent string)) error {
	sub, err := b.nc.Subscribe(Subject, func(m *nats.Msg) { deliver(m.Data, m.Header.Get(TraceparentHeader)) })
	if err != nil {
		return err
	}
	b.sub = sub
	return b.nc.Flush()
}

// Close stops receiving.
func (b *Bus) Close() {
	if b.sub != nil {
		_ = b.sub.Unsubscribe()
	}
}

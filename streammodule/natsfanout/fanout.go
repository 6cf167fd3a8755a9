package natsfanout

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/trinehq/trine/internal/subject"
	"github.com/trinehq/trine/internal/tracing"
)

// Publisher publishes encoded stream events on their group's subject.
type Publisher struct{ nc *nats.Conn }

// NewPublisher returns a Publisher on nc.
func NewPublisher(nc *nats.Conn) *Publisher { return &Publisher{nc: nc} }

// MaxPayload is the largest message the NATS server takes (its
// max_payload), 0 before the connection has been established.
func (p *Publisher) MaxPayload() int { return int(p.nc.MaxPayload()) }

// Publish sends one encoded event to every subscriber of (stream, group).
// When ctx carries a span, its W3C trace context goes in the message's
// traceparent header (SubscribeTraced hands it on).
func (p *Publisher) Publish(ctx context.Context, stream, group string, event []byte) error {
	if tp := tracing.FromContext(ctx); tp != "" {
		return p.nc.PublishMsg(&nats.Msg{Subject: Subject(stream, group), Data: event, Header: nats.Header{TraceparentHeader: []string{tp}}})
	}
	return p.nc.Publish(Subject(stream, group), event)
}

// TraceparentHeader is the NATS header of an event's trace context, as
// W3C names it for HTTP.
const TraceparentHeader = "traceparent"

// IsOf reports whether an event frame is of (stream, group): what a
// subscriber of a hashed subject checks, since two groups may share one.
func IsOf(frame []byte, stream, group string) bool {
	var f struct {
		Stream string `json:"streamName"`
		Group  string `json:"groupId"`
	}
	return json.Unmarshal(frame, &f) == nil && f.Stream == stream && f.Group == group
}

// Subscriber holds NATS interest only in the groups some local handler
// watches: the first Subscribe of a group subscribes its subject, the last
// cancel unsubscribes it. Safe for concurrent use.
type Subscriber struct {
	nc *nats.Conn

	mu     sync.Mutex
	groups map[string]*group
	nextID uint64
}

type group struct {
	sub      *nats.Subscription
	ready    chan struct{} // closed once the server holds the interest
	err      error         // set before ready is closed
	mu       sync.RWMutex
	handlers map[uint64]func(frame []byte, traceparent string)
}

// NewSubscriber returns a Subscriber on nc.
func NewSubscriber(nc *nats.Conn) *Subscriber {
	return &Subscriber{nc: nc, groups: make(map[string]*group)}
}

// Subscribe calls h with every event of (stream, group) until cancel is
// called. It returns once the NATS server holds the interest, so every
// event published after it returns reaches h (h may see some published
// just before). h runs on the NATS delivery goroutine and must not block:
// it should hand the bytes to a bounded queue. Events of one group reach h
// in publication order.
func (s *Subscriber) Subscribe(stream, groupID string, h func(event []byte)) (cancel func(), err error) {
	return s.SubscribeTraced(stream, groupID, func(event []byte, _ string) { h(event) })
}

// SubscribeTraced is Subscribe whose handler also receives the
// traceparent header of each event ("" when it has none).
func (s *Subscriber) SubscribeTraced(stream, groupID string, h func(event []byte, traceparent string)) (cancel func(), err error) {
	subj := Subject(stream, groupID)
	key := stream + "\x00" + groupID
	verify := subject.Hashed(subj) // another group could share the subject
	s.mu.Lock()
	g := s.groups[key]
	created := g == nil
	if created {
		g = &group{handlers: make(map[uint64]func([]byte, string)), ready: make(chan struct{})}
		sub, err := s.nc.Subscribe(subj, func(m *nats.Msg) {
			if verify && !IsOf(m.Data, stream, groupID) {
				return
			}
			tp := m.Header.Get(TraceparentHeader)
			g.mu.RLock()
			defer g.mu.RUnlock()
			for _, h := range g.handlers {
				h(m.Data, tp)
			}
		})
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		g.sub = sub
		s.groups[key] = g
	}
	s.nextID++
	id := s.nextID
	g.mu.Lock()
	g.handlers[id] = h
	g.mu.Unlock()
	s.mu.Unlock()
	var once sync.Once
	cancel = func() { once.Do(func() { s.release(key, g, id) }) }
	// A round trip to the server makes sure it has processed the SUB.
	if created {
		g.err = s.nc.Flush()
		close(g.ready)
	} else {
		<-g.ready
	}
	if g.err != nil {
		cancel()
		return nil, fmt.Errorf("natsfanout: subscribe %s: %w", subj, g.err)
	}
	return cancel, nil
}

func (s *Subscriber) release(key string, g *group, id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g.mu.Lock()
	delete(g.handlers, id)
	empty := len(g.handlers) == 0
	g.mu.Unlock()
	if empty && s.groups[key] == g {
		delete(s.groups, key)
		_ = g.sub.Unsubscribe()
	}
}

// Groups reports how many groups hold NATS interest.
func (s *Subscriber) Groups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.groups)
}

package streammodule

import (
	"context"
	"sync/atomic"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/wire"
)

// FnPresence lists a group's presence members.
const FnPresence = "stream::presence"

// MaxPresencePage is the largest (and default) page of stream::presence.
const MaxPresencePage = 1000

// PresenceReader gives a group's presence members across gateways, in
// identity order (gateway.Gateway).
type PresenceReader interface {
	Members(ctx context.Context, stream, group string) ([]wire.Member, error)
}

// presenceReader holds the module's PresenceReader, set once the gateway
// that serves the module exists.
type presenceReader struct {
	r atomic.Pointer[PresenceReader]
}

// SetPresence sets where stream::presence reads members; until then it
// answers that a group has none.
func (m *Module) SetPresence(r PresenceReader) { m.presence.r.Store(&r) }

// PresencePage is stream::presence's result.
type PresencePage struct {
	Members []wire.Member `json:"members"`
	Count   int           `json:"count"`
	More    bool          `json:"more"`
}

// presenceFn serves stream::presence with the caller's right to read the
// group (stream::get).
func (m *Module) presenceFn(ctx context.Context, c engine.Call) ([]byte, error) {
	in, it, err := m.readItem(c, false)
	if err != nil {
		return nil, err
	}
	if err := c.Grant.CanCall(FnGet, nil); err != nil {
		return nil, err
	}
	limit, after, _, err := store.ReadPage(FnPresence, in)
	if err != nil {
		return nil, err
	}
	if limit == 0 || limit > MaxPresencePage {
		limit = MaxPresencePage
	}
	var ms []wire.Member
	if r := m.presence.r.Load(); r != nil {
		if ms, err = (*r).Members(ctx, it.key.Stream, it.key.Group); err != nil {
			return nil, engine.Errorf(codes.Unavailable, "%s: %v", FnPresence, err)
		}
	}
	page, more := wire.PageMembers(ms, after, limit)
	out := make([]wire.Member, len(page))
	for i, m := range page {
		out[i] = m.Public()
	}
	page = out
	return engine.MarshalJSON(PresencePage{Members: page, Count: len(ms), More: more})
}

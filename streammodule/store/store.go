// Package store keeps the StreamModule's items: JSON values addressed by
// (stream, group, item), with a sequence number per group that every change
// advances. Adapters implement Store; all of them pass the conformance suite
// in storetest.
//
// Concurrency: every Store is safe for concurrent use; operations on one
// group are serialized, those on different groups run in parallel. Memory
// starts no goroutines; File starts one journal writer, which Close flushes
// and stops.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Key names one item. Names are opaque strings: any UTF-8 is allowed and two
// different keys never share storage.
type Key struct {
	Stream, Group, Item string
}

// Kind says what a change did.
type Kind uint8

// The kinds of change.
const (
	KindCreate Kind = iota + 1
	KindUpdate
	KindDelete
	KindEvent // a stream::send event: nothing is stored
)

var kindNames = [...]string{KindCreate: "create", KindUpdate: "update", KindDelete: "delete", KindEvent: "event"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Item is one stored value. Seq is the sequence of the change that last
// wrote it; a missing item has Seq 0 and a nil Value.
type Item struct {
	ID    string          `json:"id"`
	Value json.RawMessage `json:"data"`
	Seq   uint64          `json:"seq"`
}

// Change is one committed change of a group.
type Change struct {
	Key
	Kind Kind
	// Old is the value before the change, nil when there was none.
	Old json.RawMessage
	// Value is the new value (create, update), the removed value (delete)
	// or the event data (event).
	Value json.RawMessage
	// EventType is the custom type of an event.
	EventType string
	// Seq is the group's sequence number after the change.
	Seq uint64
	// Time is when the store committed the change.
	Time time.Time
	// Ctx is the context of the write that made the change (Put, Delete,
	// Emit), so that OnCommit can carry its trace on; nil for changes a
	// store learns of otherwise. OnCommit may read its values and must
	// not wait on it.
	Ctx context.Context
}

// Page is a slice of a group in item-id order, read at group sequence Seq.
type Page struct {
	Items []Item
	Seq   uint64
	// More reports that items follow the last one returned.
	More bool
}

// Range selects the items List returns: those with ids greater than After,
// at most Limit of them (0: no limit), and no more than fit in MaxBytes
// (0: no bound), counting len(ID)+len(Value)+ItemBytes an item; at least
// one item is returned, whatever its size. The store stops reading once a
// bound is reached, and Page.More tells that items were left out.
type Range struct {
	After     string
	Limit     int
	MaxBytes  int
	ItemBytes int
}

// Take reports whether item it may join a page of taken items that come
// to size bytes so far, and the page's size with it; a List adapter asks
// it of each item in order, and stops with More at the first refusal.
func (r Range) Take(taken, size int, it Item) (ok bool, newSize int) {
	if r.Limit > 0 && taken >= r.Limit {
		return false, size
	}
	n := size + len(it.ID) + len(it.Value) + r.ItemBytes
	if r.MaxBytes > 0 && taken > 0 && n > r.MaxBytes {
		return false, size
	}
	return true, n
}

// StreamGroups is one row of ListAll.
type StreamGroups struct {
	ID     string   `json:"id"`
	Groups []string `json:"groups"`
}

// Mutator computes an item's new value from its current one (exists is
// false and old nil when the item is missing). Returning an error leaves the
// item unchanged and fails the write with that error.
type Mutator func(old json.RawMessage, exists bool) (json.RawMessage, error)

// Cond guards a write. The zero Cond always holds.
type Cond struct {
	// IfSeq, when set, requires the item's Seq to equal *IfSeq (0: the item
	// must not exist); otherwise the write fails with ErrConflict.
	IfSeq *uint64
}

// Store holds the items. Writes to one item are atomic: concurrent Puts on
// a key never lose an update. Every change advances its group's sequence by
// one; sequences start at 1, never repeat and survive restarts of durable
// adapters.
type Store interface {
	// Get returns the item (Seq 0 when missing) and the group's sequence
	// at the time of the read.
	Get(ctx context.Context, k Key) (Item, uint64, error)
	// Put writes m's result as the item's value.
	Put(ctx context.Context, k Key, c Cond, m Mutator) (Change, error)
	// Delete removes the item. Removing a missing item changes nothing:
	// it returns ok false and no sequence is used.
	Delete(ctx context.Context, k Key, c Cond) (ch Change, ok bool, err error)
	// Emit commits c to its group without storing anything: a
	// stream::send event (KindEvent), or a change a custom stream made
	// elsewhere. Only c's Key, Kind, EventType, Old and Value are used.
	Emit(ctx context.Context, c Change) (Change, error)
	// List returns the group's items in r, in byte order of their ids.
	List(ctx context.Context, stream, group string, r Range) (Page, error)
	// ListGroups returns the ids of the stream's groups that hold items,
	// sorted.
	ListGroups(ctx context.Context, stream string) ([]string, error)
	// ListAll returns every stream that holds items, sorted by id.
	ListAll(ctx context.Context) ([]StreamGroups, error)
	// Close releases the store; durable adapters flush first.
	Close() error
}

// Options configure an adapter.
type Options struct {
	// OnCommit, if set, receives every change once it is committed (durable,
	// for durable adapters), before the write that made it returns. Changes
	// of one group arrive in sequence order, one at a time; OnCommit must
	// not block and must not call the store.
	OnCommit func(Change)
	// Now stamps changes; nil means time.Now.
	Now func() time.Time
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Errors returned by adapters.
var (
	// ErrConflict: a Cond did not hold.
	ErrConflict = errors.New("store: sequence does not match")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("store: closed")
	// ErrTooLarge: the adapter cannot hold a value this large (JetStream:
	// the NATS server's max_payload). Nothing was written.
	ErrTooLarge = errors.New("store: value too large for the store")
)

// CheckName refuses a name the modules do not store: empty, longer than
// max bytes, or not valid UTF-8. field names it in the error.
func CheckName(field, v string, max int) error {
	switch {
	case v == "":
		return fmt.Errorf("%s is empty", field)
	case len(v) > max:
		return fmt.Errorf("%s is %d bytes long, the limit is %d", field, len(v), max)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	return nil
}

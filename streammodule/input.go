package streammodule

import (
	"encoding/json"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/store"
)

// The stream::* inputs, read field by field from the payload the engine
// validated (engine.Input): each function reads the fields it takes,
// checks the required ones and the names, and compacts data in the same
// pass that copies it.

// itemInput names an item (or a group, for list) and the sequence a write
// is conditional on.
type itemInput struct {
	key   store.Key
	ifSeq *uint64
}

// readName reads a required name field and checks it.
func (m *Module) readName(in engine.Input, field string) (string, error) {
	return store.ReadName(in, field, m.cfg.MaxNameBytes)
}

// readItem reads stream_name, group_id, item_id (withItem) and if_seq.
func (m *Module) readItem(c engine.Call, withItem bool) (engine.Input, itemInput, error) {
	var it itemInput
	in, err := engine.ReadInput(c)
	if err != nil {
		return in, it, err
	}
	if it.key.Stream, err = m.readName(in, "stream_name"); err != nil {
		return in, it, err
	}
	if it.key.Group, err = m.readName(in, "group_id"); err != nil {
		return in, it, err
	}
	if withItem {
		if it.key.Item, err = m.readName(in, "item_id"); err != nil {
			return in, it, err
		}
	}
	it.ifSeq, err = in.Uint64("if_seq")
	return in, it, err
}

// readData reads the required data field, compact, and refuses one over
// MaxItemBytes.
func (m *Module) readData(in engine.Input, fn string) (json.RawMessage, error) {
	// Stored and sent compact: frames stay small, and SSE data lines
	// never hold a raw newline.
	data := in.Compact("data")
	if data == nil {
		return nil, in.Missing("data")
	}
	return data, m.checkSize(fn, data)
}

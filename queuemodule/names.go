package queuemodule

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natsheader"
)

// headerName decodes the name in header key of h (natsheader) and checks
// it as the edge did (engine.ValidateName): a message whose header was
// altered, or written by another program, fails here and is
// dead-lettered, never run under another name nor dropped.
func headerName(h nats.Header, key, kind string, max int) (string, error) {
	raw := h.Get(key)
	if raw == "" {
		return "", fmt.Errorf("no %s header", key)
	}
	v, err := natsheader.Decode(raw)
	if err != nil {
		return "", fmt.Errorf("header %s %q: %w", key, raw, err)
	}
	if err := engine.ValidateName(kind, v, max); err != nil {
		return "", fmt.Errorf("header %s: %w", key, err)
	}
	return v, nil
}

// groupKey is a fifo job's group: the canonical JSON of the decoded
// value of its message_group_field, so that spellings of one value
// ("a<b" and "a\u003cb", 1 and 1.0, {"x":1,"y":2} and {"y":2,"x":1}) are
// one group and share a lane. Values that decode alike but differ (two
// numbers past 2^53, lone surrogates) become one group: they run in one
// order, never two groups' order at once.
func groupKey(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw) // checked valid by the caller's Unmarshal
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	return string(b)
}

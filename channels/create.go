package channels

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// FnCreate is the built-in function that creates a channel. Its input is
// {buffer_size?} (1..Config.MaxBuffer frames; default Config.DefaultBuffer;
// an absent or null payload is fine) and its result is
// {"writer": Ref, "reader": Ref}.
const FnCreate = "engine::channels::create"

// Ref names one end of a channel. Refs travel as plain JSON inside payloads:
// whoever holds one opens GET /ws/channels/{channel_id}?key={access_key}&dir={direction}.
type Ref struct {
	ChannelID string `json:"channel_id"`
	AccessKey string `json:"access_key"`
	// Direction is "write" or "read".
	Direction string `json:"direction"`
}

type createInput struct {
	BufferSize *int `json:"buffer_size"`
}

type createResult struct {
	Writer Ref `json:"writer"`
	Reader Ref `json:"reader"`
}

// Register registers FnCreate on e; the channels a worker session of e
// creates are removed when it ends.
func (h *Hub) Register(e *engine.Engine) error {
	h.sessions = e
	return e.RegisterFunction(FnCreate, "Create a streaming data channel; {buffer_size?}", engine.HandlerFunc(h.create))
}

func (h *Hub) create(_ context.Context, c engine.Call) ([]byte, error) {
	var in createInput
	if p := bytes.TrimSpace(c.Payload); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		if err := json.Unmarshal(p, &in); err != nil {
			return nil, engine.Errorf(codes.InvalidArgument, "payload: %v", err)
		}
	}
	size := h.cfg.DefaultBuffer
	if in.BufferSize != nil {
		size = *in.BufferSize
		if size < 1 || size > h.cfg.MaxBuffer {
			return nil, engine.Errorf(codes.InvalidArgument, "buffer_size %d is out of range 1..%d", size, h.cfg.MaxBuffer)
		}
	}
	key, done, ok := h.ownerOf(c)
	ch, err := h.open(size, "", creator{key, done, ok})
	if err != nil {
		return nil, err
	}
	h.log.Debug("channel created", logChannelID, ch.id, "buffer_size", size)
	return json.Marshal(createResult{
		Writer: Ref{ChannelID: ch.id, AccessKey: ch.key, Direction: dirWrite},
		Reader: Ref{ChannelID: ch.id, AccessKey: ch.key, Direction: dirRead},
	})
}

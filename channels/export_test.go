package channels

// Len returns the number of channels the hub holds.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.channels)
}

// Buffer returns how many frames channel id has buffered and how many it
// may buffer; ok is false when the hub does not hold id.
func (h *Hub) Buffer(id string) (n, size int, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channels[id]
	if ch == nil {
		return 0, 0, false
	}
	return len(ch.buf), cap(ch.buf), true
}

// Buffered returns the bytes held in the hub's channels, against
// Config.MaxTotalBufferBytes.
func (h *Hub) Buffered() int64 { return h.buffered.Load() }

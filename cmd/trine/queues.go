package main

import (
	"fmt"
	"log/slog"

	"gopkg.in/yaml.v3"

	"github.com/trinehq/trine/internal/natsembed"
	"github.com/trinehq/trine/queuemodule"
)

// decodeQueues reads YAML queues: {name: {type, message_group_field,
// max_retries, concurrency, backoff_ms}}, iii's queue_configs fields.
func decodeQueues(n *yaml.Node) (map[string]queuemodule.QueueConfig, error) {
	qs, err := decodeStrict[map[string]queuemodule.QueueConfig](n)
	if err != nil {
		return nil, err
	}
	if _, err := queuemodule.Normalize(qs); err != nil {
		return nil, err
	}
	return qs, nil
}

// newQueueModule builds the queue module. Its streams live in JetStream
// and are opened in the background (Open, a jsboot.Part): until then the
// queue functions answer unavailable.
func newQueueModule(cfg engineConfig, ns *natsembed.Server, log *slog.Logger) (*queuemodule.Module, error) {
	c := cfg.Queue
	c.Conn, c.Replicas, c.CallTimeout, c.MaxListBytes, c.Logger = ns.Conn, cfg.Store.Replicas, cfg.Engine.DefaultTimeout, listBytes(cfg), log
	m, err := queuemodule.New(c)
	if err != nil {
		return nil, fmt.Errorf("queues: %w", err)
	}
	return m, nil
}

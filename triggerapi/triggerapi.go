// Package triggerapi holds the wire types that the engine's modules and
// the worker SDK share: what a trigger's function receives. Each is
// defined once, here, so that the JSON a module sends and the struct a
// worker decodes cannot drift; the SDK exports them under its own names
// (trine.CronEvent is CronEvent). The package imports nothing but the
// standard library.
//
// Concurrency: the package holds plain values and starts no goroutines.
package triggerapi

import "encoding/json"

// CronEvent is what a cron trigger's function receives, iii's shape.
type CronEvent struct {
	Trigger       string `json:"trigger"` // "cron"
	JobID         string `json:"job_id"`
	ScheduledTime string `json:"scheduled_time"`
	ActualTime    string `json:"actual_time"`
}

// StateEvent is what a state trigger's function receives, iii's shape.
type StateEvent struct {
	Type      string          `json:"type"`       // always "state"
	EventType string          `json:"event_type"` // state:created, state:updated, state:deleted
	Scope     string          `json:"scope"`
	Key       string          `json:"key"`
	OldValue  json.RawMessage `json:"old_value"`
	NewValue  json.RawMessage `json:"new_value"`
	// Seq is the scope's sequence after the change.
	Seq uint64 `json:"seq"`
}

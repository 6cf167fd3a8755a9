package queuemodule

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"
)

// Queue types.
const (
	TypeStandard = "standard"
	TypeFIFO     = "fifo"
)

// Defaults of a QueueConfig, iii's.
const (
	DefaultMaxRetries  = 3
	DefaultConcurrency = 10
	DefaultBackoffMs   = 1000
	// MaxBackoff caps the exponential backoff.
	MaxBackoff = time.Hour
)

// QueueConfig is one named queue, with iii's queue_configs fields.
type QueueConfig struct {
	// Type is standard (concurrent) or fifo (ordered per message group).
	Type string `yaml:"type" json:"type"`
	// MessageGroupField names the payload field whose value is a fifo
	// job's group; it must be present and not null.
	MessageGroupField string `yaml:"message_group_field" json:"message_group_field,omitempty"`
	// MaxRetries is how many attempts a job gets before the dead-letter
	// queue. Default 3.
	MaxRetries int `yaml:"max_retries" json:"max_retries"`
	// Concurrency is how many jobs of the queue run at once across the
	// fleet; for fifo, how many message groups progress at once. Default
	// 10; fifo 1.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// BackoffMs is the retry backoff: BackoffMs × 2^(attempt−1), at most
	// an hour. Default 1000.
	BackoffMs int `yaml:"backoff_ms" json:"backoff_ms"`
	// PollIntervalMs is accepted for iii's configs and ignored: JetStream
	// pushes jobs as they come.
	PollIntervalMs int `yaml:"poll_interval_ms" json:"-"`
}

// queueName bounds queue names: they become parts of JetStream consumer
// names.
var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Normalize checks named queues and fills in their defaults.
func Normalize(queues map[string]QueueConfig) (map[string]QueueConfig, error) {
	out := make(map[string]QueueConfig, len(queues))
	for _, name := range slices.Sorted(maps.Keys(queues)) {
		n, err := queues[name].normalize(name)
		if err != nil {
			return nil, err
		}
		out[name] = n
	}
	return out, nil
}

// normalize checks c and fills in its defaults.
func (c QueueConfig) normalize(name string) (QueueConfig, error) {
	if !queueName.MatchString(name) {
		return c, fmt.Errorf("queue %q: names are 1 to 64 letters, digits, '-' or '_'", name)
	}
	switch c.Type {
	case "":
		c.Type = TypeStandard
	case TypeStandard, TypeFIFO:
	default:
		return c, fmt.Errorf("queue %q: type %q: want standard or fifo", name, c.Type)
	}
	if c.Type == TypeFIFO && c.MessageGroupField == "" {
		return c, fmt.Errorf("queue %q: a fifo queue needs message_group_field", name)
	}
	if c.Type == TypeStandard && c.MessageGroupField != "" {
		return c, fmt.Errorf("queue %q: message_group_field is for fifo queues", name)
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
		max  int
	}{
		{"max_retries", &c.MaxRetries, DefaultMaxRetries, 1000},
		{"concurrency", &c.Concurrency, DefaultConcurrency, 10000},
		{"backoff_ms", &c.BackoffMs, DefaultBackoffMs, int(MaxBackoff / time.Millisecond)},
	} {
		switch {
		case *f.v < 0 || *f.v > f.max:
			return c, fmt.Errorf("queue %q: %s is %d: want 0 to %d (0: the default, %d)", name, f.name, *f.v, f.max, f.def)
		case *f.v == 0 && f.name == "concurrency" && c.Type == TypeFIFO:
			*f.v = 1
		case *f.v == 0:
			*f.v = f.def
		}
	}
	if c.Concurrency > 64 && c.Type == TypeFIFO {
		return c, fmt.Errorf("queue %q: a fifo queue's concurrency is at most 64 (one consumer per lane)", name)
	}
	return c, nil
}

// backoff is the wait before attempt+1, after attempt failed.
func (c QueueConfig) backoff(attempt int) time.Duration {
	d := time.Duration(c.BackoffMs) * time.Millisecond
	for i := 1; i < attempt && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

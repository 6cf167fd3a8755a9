// Package jsboot creates JetStream streams at start-up, waiting for a
// cluster that is still forming: a meta leader not yet elected, peers not
// yet known, or JetStream not yet answering are what every cluster shows
// while it boots, and an engine started beside it waits them out instead of
// exiting.
//
// Concurrency: CreateOrUpdateStream runs on its caller's goroutine. A
// Starter's Run starts one goroutine per part it brings up and returns once
// they have all exited, after its ctx ends; Settled and States are safe to
// call concurrently with it.
package jsboot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// attemptTimeout bounds one attempt, so that a request lost while the
// cluster elects a leader is asked again.
const attemptTimeout = 5 * time.Second

// CreateOrUpdateStream is js.CreateOrUpdateStream, retried with
// exponential backoff (50 ms doubling to 2 s) while the error is one a
// booting cluster gives, until ctx ends. An error that retrying cannot
// cure (an invalid configuration, say) returns at once.
func CreateOrUpdateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	wait := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		st, err := js.CreateOrUpdateStream(actx, cfg)
		cancel()
		if err == nil {
			return st, nil
		}
		if !Transient(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stream %s: JetStream not ready: %w", cfg.Name, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// JetStream's error codes that a forming cluster gives.
const (
	errClusterNoPeers      jetstream.ErrorCode = 10005 // no suitable peers for placement (yet)
	errClusterNotAvailable jetstream.ErrorCode = 10008 // JetStream temporarily unavailable
	errClusterNotLeader    jetstream.ErrorCode = 10009 // asked a node that is not (or no longer) leader
	errInsufficientRes     jetstream.ErrorCode = 10023 // peers have not reported their resources yet
)

// Transient reports whether err is one a JetStream cluster gives while it
// boots or elects a leader.
func Transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errClusterNoPeers, errClusterNotAvailable, errClusterNotLeader, errInsufficientRes:
			return true
		}
		return apiErr.Code == 503 || apiErr.Code == 408
	}
	return false
}

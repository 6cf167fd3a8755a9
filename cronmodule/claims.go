package cronmodule

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/internal/jsboot"
	"github.com/trinehq/trine/internal/subject"
)

// JetStream claims: names and the duplicate window.
const (
	ClaimsStream  = "TRINE_CRON"
	claimsSubject = "trine.cron."
	// DuplicateWindow is how long JetStream remembers a claim: engines
	// whose clocks differ by less claim a fire once between them.
	DuplicateWindow = 10 * time.Minute
)

// JetStreamClaims claims fires with messages on the JetStream stream
// TRINE_CRON, one subject per job, deduplicated by Nats-Msg-Id.
type JetStreamClaims struct {
	js jetstream.JetStream
}

// OpenJetStreamClaims creates (or updates) the claims stream, waiting for
// a JetStream cluster that is still forming until ctx ends.
func OpenJetStreamClaims(ctx context.Context, nc *nats.Conn, replicas int) (*JetStreamClaims, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if replicas < 1 {
		replicas = 1
	}
	_, err = jsboot.CreateOrUpdateStream(ctx, js, jetstream.StreamConfig{
		Name:              ClaimsStream,
		Subjects:          []string{claimsSubject + ">"},
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		Duplicates:        DuplicateWindow,
		MaxMsgsPerSubject: 1,
		MaxAge:            2 * DuplicateWindow,
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, err
	}
	return &JetStreamClaims{js: js}, nil
}

// Claim implements Claimer: the first publish of (job, scheduled) in the
// window is the winner; JetStream reports every later one as a duplicate.
func (c *JetStreamClaims) Claim(ctx context.Context, job string, scheduled time.Time) (bool, error) {
	tok := subject.Token(job)
	id := tok + "@" + strconv.FormatInt(scheduled.Unix(), 10)
	msg := &nats.Msg{Subject: claimsSubject + tok, Data: []byte(scheduled.UTC().Format(time.RFC3339)), Header: nats.Header{"Trine-Job": []string{job}}}
	ack, err := c.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
	if err != nil {
		return false, err
	}
	return !ack.Duplicate, nil
}

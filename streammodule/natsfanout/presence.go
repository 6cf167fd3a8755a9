package natsfanout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/internal/subject"
)

// Presence defaults.
const (
	DefaultPresenceBucket = "TRINE_PRESENCE"
	DefaultPresenceTTL    = 15 * time.Second
)

// ErrPresenceNotOpen reports a Presence whose bucket is not open yet (no
// JetStream so far).
var ErrPresenceNotOpen = errors.New("natsfanout: presence bucket not open (waiting for JetStream)")

// PresenceConfig configures a Presence.
type PresenceConfig struct {
	// Bucket names the key-value bucket. Default DefaultPresenceBucket.
	Bucket string
	// TTL is how long an entry lives without being written again; the
	// process that creates the bucket sets it, others take the bucket's.
	// Default DefaultPresenceTTL; at least one second.
	TTL time.Duration
	// Replicas is the bucket's replication factor. Default 1.
	Replicas int
	// Gateway identifies this gateway's entries. Default: random.
	Gateway string
}

// Presence shares gateways' presence members through a JetStream
// key-value bucket with a TTL: the key of an entry is
// <stream token>.<group token>.<gateway>, with the subject tokens of
// Token ('~' written '=', which KV keys allow and tokens never hold), so
// keys are injective and bounded. A gateway renews its entries every
// Heartbeat (a third of the TTL); the entries of a gateway that stops
// renewing them expire, and watchers are told (the bucket keeps a marker
// for each). It implements gateway.PresenceStore; Open makes it usable.
type Presence struct {
	nc  *nats.Conn
	cfg PresenceConfig
	kv  atomic.Pointer[presenceKV]
}

type presenceKV struct {
	kv  jetstream.KeyValue
	ttl time.Duration
}

// NewPresence returns a Presence; Open opens (or creates) its bucket.
func NewPresence(nc *nats.Conn, cfg PresenceConfig) *Presence {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultPresenceBucket
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultPresenceTTL
	}
	cfg.TTL = max(cfg.TTL, time.Second)
	if cfg.Gateway == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Gateway = hex.EncodeToString(b[:])
	}
	return &Presence{nc: nc, cfg: cfg}
}

// Gateway is this gateway's id in keys.
func (p *Presence) Gateway() string { return p.cfg.Gateway }

// Open opens the bucket, creating it with the configured TTL if it does
// not exist.
func (p *Presence) Open(ctx context.Context) error {
	if p.kv.Load() != nil {
		return nil
	}
	js, err := jetstream.New(p.nc)
	if err != nil {
		return fmt.Errorf("natsfanout: %w", err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         p.cfg.Bucket,
		Description:    "Trine presence: each gateway's members of each group, under a TTL it renews",
		History:        1,
		TTL:            p.cfg.TTL,
		LimitMarkerTTL: p.cfg.TTL,
		Storage:        jetstream.MemoryStorage,
		Replicas:       max(p.cfg.Replicas, 1),
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, p.cfg.Bucket)
	}
	if err != nil {
		return fmt.Errorf("natsfanout: presence bucket %s: %w", p.cfg.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("natsfanout: presence bucket %s: %w", p.cfg.Bucket, err)
	}
	ttl := st.TTL()
	if ttl <= 0 {
		ttl = p.cfg.TTL
	}
	p.kv.Store(&presenceKV{kv: kv, ttl: ttl})
	return nil
}

func (p *Presence) open() (*presenceKV, error) {
	k := p.kv.Load()
	if k == nil {
		return nil, ErrPresenceNotOpen
	}
	return k, nil
}

// keyToken is Token as a KV key token.
func keyToken(name string) string { return strings.ReplaceAll(subject.Token(name), "~", "=") }

func groupKeyPrefix(stream, group string) string {
	return keyToken(stream) + "." + keyToken(group) + "."
}

// Heartbeat is how often a gateway writes its entries again: a third of
// the bucket's TTL (of the configured one until Open).
func (p *Presence) Heartbeat() time.Duration {
	if k := p.kv.Load(); k != nil {
		return k.ttl / 3
	}
	return p.cfg.TTL / 3
}

// TTL is how long an entry stays without being written again: the
// bucket's (the configured one until Open).
func (p *Presence) TTL() time.Duration {
	if k := p.kv.Load(); k != nil {
		return k.ttl
	}
	return p.cfg.TTL
}

// Put writes this gateway's entry of a group; nil deletes it.
func (p *Presence) Put(ctx context.Context, stream, group string, entry []byte) error {
	k, err := p.open()
	if err != nil {
		return err
	}
	key := groupKeyPrefix(stream, group) + p.cfg.Gateway
	if entry == nil {
		return k.kv.Delete(ctx, key)
	}
	_, err = k.kv.Put(ctx, key, entry)
	return err
}

// Watch calls h with the other gateways' entries of a group: those there
// now, then done, then every change (nil: deleted or expired).
func (p *Presence) Watch(stream, group string, h func(gateway string, entry []byte, written time.Time), done func()) (func(), error) {
	k, err := p.open()
	if err != nil {
		return nil, err
	}
	prefix := groupKeyPrefix(stream, group)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := k.kv.Watch(ctx, prefix+"*")
	if err != nil {
		cancel()
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for e := range w.Updates() {
			if e == nil {
				done()
				continue
			}
			gw := strings.TrimPrefix(e.Key(), prefix)
			if gw == p.cfg.Gateway {
				continue
			}
			if e.Operation() == jetstream.KeyValuePut {
				h(gw, e.Value(), e.Created())
			} else {
				h(gw, nil, time.Time{})
			}
		}
	})
	return func() {
		cancel()
		_ = w.Stop()
		wg.Wait()
	}, nil
}

// Entries returns every gateway's entry of a group.
func (p *Presence) Entries(ctx context.Context, stream, group string) ([][]byte, error) {
	k, err := p.open()
	if err != nil {
		return nil, err
	}
	w, err := k.kv.Watch(ctx, groupKeyPrefix(stream, group)+"*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out [][]byte
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return out, nil
			}
			out = append(out, e.Value())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

package natsfanout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
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
// key-value bucket with a TTL: the keys of an entry are
// <stream token>.<group token>.<gateway>.<chunk>, with the subject tokens of
// Token ('~' written '=', which KV keys allow and tokens never hold), so
// keys are injective and bounded. A gateway renews its entries every
// Heartbeat (a third of the TTL); the entries of a gateway that stops
// renewing them expire, and watchers are told (the bucket keeps a marker
// for each). It implements gateway.PresenceStore; Open makes it usable.
type Presence struct {
	nc       *nats.Conn
	cfg      PresenceConfig
	kv       atomic.Pointer[presenceKV]
	listings chan struct{}

	mu     sync.Mutex
	chunks map[string]int // chunks written per group key prefix
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
	return &Presence{nc: nc, cfg: cfg, listings: make(chan struct{}, maxListings), chunks: make(map[string]int)}
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

// entryHeadroom is what a message's subject and headers may take of the
// max payload besides the entry.
const entryHeadroom = 4 << 10

// MaxEntryBytes is the largest entry (chunk) Put writes: the connection's
// max payload (1 MiB by default) less room for the subject and headers.
func (p *Presence) MaxEntryBytes() int {
	return max(int(p.nc.MaxPayload())-entryHeadroom, entryHeadroom)
}

// Put writes this gateway's entry of a group as chunks, each under its
// own key <group prefix><gateway>.<n>, and deletes the chunks of an
// earlier, longer entry; none deletes them all.
func (p *Presence) Put(ctx context.Context, stream, group string, chunks [][]byte) error {
	k, err := p.open()
	if err != nil {
		return err
	}
	base := groupKeyPrefix(stream, group) + p.cfg.Gateway + "."
	p.mu.Lock()
	had := p.chunks[base]
	p.mu.Unlock()
	for i, c := range chunks {
		if _, err := k.kv.Put(ctx, base+strconv.Itoa(i), c); err != nil {
			return err
		}
	}
	if len(chunks) == 0 {
		had = max(had, 1) // a gateway that restarted may have left some
	}
	for i := len(chunks); i < had; i++ {
		if err := k.kv.Delete(ctx, base+strconv.Itoa(i)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
	}
	p.mu.Lock()
	if len(chunks) == 0 {
		delete(p.chunks, base)
	} else {
		p.chunks[base] = len(chunks)
	}
	p.mu.Unlock()
	return nil
}

// Watch calls h with the other gateways' entry chunks of a group (the
// writer is "<gateway>.<n>"): those there now, then done, then every
// change (nil: deleted). It costs no JetStream consumer while it lasts:
// changes come through a core NATS subscription on the group's keys'
// subjects, and the entries there now from a short-lived listing
// (listings run at most maxListings at once). Entries that expire are not
// reported: the caller forgets an entry not renewed within the TTL.
func (p *Presence) Watch(stream, group string, h func(writer string, entry []byte, written time.Time), done func()) (func(), error) {
	k, err := p.open()
	if err != nil {
		return nil, err
	}
	prefix := groupKeyPrefix(stream, group)
	subj := "$KV." + p.cfg.Bucket + "." + prefix
	var mu sync.Mutex
	live := map[string]bool{} // writers heard from live: the listing is older
	own := p.cfg.Gateway + "."
	sub, err := p.nc.Subscribe(subj+">", func(m *nats.Msg) {
		w := strings.TrimPrefix(m.Subject, subj)
		if strings.HasPrefix(w, own) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		live[w] = true
		switch m.Header.Get("KV-Operation") {
		case "DEL", "PURGE":
			h(w, nil, time.Time{})
		default:
			h(w, m.Data, time.Now())
		}
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		fctx, fcancel := context.WithTimeout(ctx, listTimeout)
		err := p.nc.FlushWithContext(fctx) // the subscription is in place
		fcancel()
		if err == nil {
			lctx, lcancel := context.WithTimeout(ctx, listTimeout)
			entries, err := p.list(lctx, k, prefix)
			lcancel()
			mu.Lock()
			for _, e := range entries {
				w := strings.TrimPrefix(e.Key(), prefix)
				if !strings.HasPrefix(w, own) && !live[w] {
					h(w, e.Value(), e.Created())
				}
			}
			mu.Unlock()
			_ = err // live changes and heartbeats fill in within a heartbeat
		}
		done()
	})
	return func() {
		_ = sub.Unsubscribe()
		cancel()
		wg.Wait()
	}, nil
}

// listTimeout bounds a watch's listing.
const listTimeout = 10 * time.Second

// maxListings bounds the short-lived consumers that listings open at once.
const maxListings = 8

// list returns the entries under prefix, through a short-lived consumer.
func (p *Presence) list(ctx context.Context, k *presenceKV, prefix string) ([]jetstream.KeyValueEntry, error) {
	select {
	case p.listings <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.listings }()
	w, err := k.kv.Watch(ctx, prefix+">", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return out, nil
			}
			out = append(out, e)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Entries returns every gateway's entry chunks of a group.
func (p *Presence) Entries(ctx context.Context, stream, group string) ([][]byte, error) {
	k, err := p.open()
	if err != nil {
		return nil, err
	}
	es, err := p.list(ctx, k, groupKeyPrefix(stream, group))
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(es))
	for _, e := range es {
		out = append(out, e.Value())
	}
	return out, nil
}

// Package gateway serves stream subscriptions to browsers over WebSocket and
// SSE. It holds NATS interest only in the groups its own clients watch,
// writes each event's pre-encoded frame to every matching socket, gives each
// connection a bounded outbound queue drained by one write per wake-up, and
// closes a connection that falls too far behind rather than slow the rest.
//
// Concurrency: a Gateway is safe for concurrent use. It starts a pinger, a
// bounded pool of snapshot readers and, per socket, a reader goroutine
// inside ServeHTTP (the writer is the ServeHTTP goroutine itself) plus
// short-lived goroutines for joins and catch-ups; a socket's goroutines end
// before its ServeHTTP returns, and Close ends the sockets, stops the rest
// and waits for them all. NATS callbacks only hand events to each socket's
// bounded queue.
//
// Presence (presence.go): a join may make its connection a member of the
// group; the gateway keeps its own members, merges the other gateways'
// (a PresenceStore), and sends presence subscribers what changed every
// 50 ms within a byte budget, from one flusher goroutine (and one per
// watched group of the store), which Close stops. Its state is guarded by
// one mutex taken before any connection's.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/cors"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/defaults"
	"github.com/trinehq/trine/internal/jwtauth"
	"github.com/trinehq/trine/internal/origin"
	"github.com/trinehq/trine/internal/ratelog"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/internal/wsconn"
	"github.com/trinehq/trine/streammodule/streamapi"
	"github.com/trinehq/trine/streammodule/wire"
)

// Defaults for Config.
const (
	DefaultMaxFrameBytes     = 1 << 20
	DefaultQueueMessages     = 4096
	DefaultQueueBytes        = 8 << 20
	DefaultPingInterval      = 25 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultAuthTimeout       = 5 * time.Second
	DefaultMaxSubscriptions  = 1024
	DefaultMaxCatchUps       = 4
	DefaultMaxCatchUpsTotal  = 64
	DefaultSnapshotPageBytes = 256 << 10
	DefaultSnapshotCoalesce  = 50 * time.Millisecond
	DefaultSSEKeepAlive      = 3 * time.Second
	DefaultSessionPosts      = 20
	// The newest contract version per stream a gateway remembers from
	// the notices: at most this many streams, and bytes of their names.
	DefaultKnownContracts     = 10_000
	DefaultKnownContractBytes = 1 << 20
)

// Backend serves snapshots, history and join decisions; the StreamModule is
// one.
type Backend interface {
	// Snapshot returns a sync frame, or with PageBytes set a page of a
	// built-in group's items (streammodule.Module.Snapshot).
	Snapshot(ctx context.Context, q streamapi.SnapshotRequest) (streamapi.SnapshotResult, error)
	Since(ctx context.Context, stream, group string, seq uint64) (frames [][]byte, last uint64, ok bool, err error)
	Join(ctx context.Context, s streamapi.Subscription) error
	Leave(s streamapi.Subscription)
}

// TokenVerifier checks a browser's token (jwtauth.Verifier).
type TokenVerifier interface {
	Verify(raw string) (jwtauth.Token, error)
}

// CloseTokenExpired closes a socket whose token expired without a fresh
// one in an auth frame.
const CloseTokenExpired = 4001

// Where browsers put their token.
const (
	TokenParam  = "token"
	TokenCookie = "trine_token"
)

// Events delivers a group's encoded events (natsfanout.Subscriber). Every
// event published after Subscribe returns must reach h, in order.
type Events interface {
	Subscribe(stream, group string, h func(frame []byte)) (cancel func(), err error)
}

// ContractEvents is Events that also delivers the notices of streams'
// new contracts (natsfanout.Subscriber): the gateway then sends a schema
// frame to each subscription of the stream.
type ContractEvents interface {
	SubscribeContracts(h func(stream string, version uint64)) (cancel func(), err error)
}

// Caller runs the auth function.
type Caller interface {
	Trigger(ctx context.Context, c engine.Call) ([]byte, error)
}

// Config configures a Gateway.
type Config struct {
	Backend Backend
	Events  Events
	// Caller runs AuthFunction; required when AuthFunction is set.
	Caller Caller
	// AuthFunction, if set, is called for every new connection with
	// {headers, query_params, path, addr} and must return an object with
	// a "context" key (its value, null included, becomes the connection's
	// context); an error or any other answer, {} included, rejects the
	// connection with 401.
	AuthFunction string
	// Tokens, if set, admits connections by a JSON Web Token instead of
	// an auth function: from the query parameter "token" or the cookie
	// "trine_token". Its claims become the connection's context, its
	// "streams" claim limits the groups it may join, and at its exp the
	// connection is closed (CloseTokenExpired) unless the client sent a
	// fresh token in an auth frame.
	Tokens TokenVerifier
	// AllowedOrigins lists the Origin values allowed to connect besides
	// same-origin pages ("*" allows any). Requests without an Origin
	// header (non-browser clients) are allowed.
	AllowedOrigins []string
	// Ready, if set, is asked before every new connection: an error
	// refuses it with 503 and the error as the reason (trine gateway:
	// until NATS and the engine are reachable).
	Ready func() error
	// AllowedHosts lists the gateway's public host names: the Host values
	// it accepts besides loopback ones (on a loopback listener, only
	// those), and the hosts whose pages are same-origin. See
	// internal/origin.
	AllowedHosts []string
	// MaxFrameBytes bounds an inbound message; a larger one closes the
	// socket with 1009. Default DefaultMaxFrameBytes.
	MaxFrameBytes int64
	// QueueMessages and QueueBytes bound a connection's outbound queue; a
	// connection over either is closed with 1008. Defaults
	// DefaultQueueMessages, DefaultQueueBytes.
	QueueMessages int
	QueueBytes    int
	// PingInterval is how often the gateway pings; a peer silent for two
	// intervals is closed. Default DefaultPingInterval.
	PingInterval time.Duration
	// SSEKeepAlive is how long an SSE stream stays silent before the
	// gateway writes a keep-alive comment, so that a client can tell a
	// dead stream (no byte for a few of these) from an idle one. Default
	// DefaultSSEKeepAlive.
	SSEKeepAlive time.Duration
	// SessionPosts bounds the POSTs (/stream/session and /stream/auth)
	// one SSE session takes per second; more are refused with 429
	// (rate_limited) and change nothing. Default DefaultSessionPosts.
	SessionPosts int
	// WriteTimeout bounds one socket write. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// AuthTimeout bounds the auth function. Default DefaultAuthTimeout.
	AuthTimeout time.Duration
	// MaxNameBytes bounds stream, group and item names in subscriptions.
	// Default streamapi.DefaultMaxNameBytes, the limit of writes.
	MaxNameBytes int
	// MaxCatchUps bounds the snapshots and replays of one connection that
	// its writer has not taken yet (more joins wait their turn), so that a
	// socket that never reads holds only that many; MaxCatchUpsTotal bounds
	// the snapshot, page and history reads under way in the whole gateway
	// (joins waiting for the same snapshot share one read). Defaults
	// DefaultMaxCatchUps and DefaultMaxCatchUpsTotal.
	MaxCatchUps, MaxCatchUpsTotal int
	// SnapshotPageBytes is the size of the pages a group snapshot is read
	// in. A larger group goes out as one message in several WebSocket
	// frames (one SSE event written in parts), each page read once the
	// previous one is written, so that a group of any size reaches a
	// client that reads while the gateway holds a few pages of it. Default
	// DefaultSnapshotPageBytes.
	SnapshotPageBytes int
	// SnapshotCoalesce is how long a snapshot read of one group (or item)
	// is shared: joins within this time of its start share it (those
	// that subscribed after it started take the events between from
	// history, also shared), so that a reconnect storm within this time
	// costs one read; a join after it reads again, at once.
	// Default DefaultSnapshotCoalesce; negative: reads follow each other
	// at once (still one at a time, shared by the joins that waited).
	SnapshotCoalesce time.Duration
	// MaxSubscriptions bounds the subscriptions of one multiplexed socket.
	// Default DefaultMaxSubscriptions.
	MaxSubscriptions int
	// Presence, if set, shares presence members with the other gateways;
	// nil: each gateway sees its own connections' members only.
	Presence PresenceStore
	// PresenceGrace is how long a member whose last connection went stays
	// (a reload within it is neither a leave nor a join). Default
	// DefaultPresenceGrace; negative: none.
	PresenceGrace time.Duration
	// PresenceMaxMembers: past it a group's presence subscribers get
	// counts instead of members. Default DefaultPresenceMaxMembers.
	PresenceMaxMembers int
	// PresenceMaxMetaBytes bounds a join's presence meta (compact JSON).
	// Default DefaultPresenceMaxMetaBytes.
	PresenceMaxMetaBytes int
	// PresenceMaxPerConn bounds the presence subscriptions of a
	// connection, PresenceMaxTotal those of the gateway and
	// PresenceMaxTotalBytes their meta (plus 128 bytes each). Defaults
	// DefaultPresenceMaxPerConn, DefaultPresenceMaxTotal,
	// DefaultPresenceMaxTotalBytes.
	PresenceMaxPerConn, PresenceMaxTotal, PresenceMaxTotalBytes int
	// PresenceRateBytes bounds the presence frames the gateway queues, in
	// bytes a second (each frame counts 64 bytes more): changes beyond it
	// wait and merge (a join and a leave of one member in between become
	// nothing), so that a storm of joins never crowds out stream events.
	// Default DefaultPresenceRateBytes.
	PresenceRateBytes int
	// Writers is the number of goroutines writing to WebSockets; zero means
	// GOMAXPROCS. SetWriters changes it.
	Writers int
	// Observer, if set, receives the latency samples pages report, and
	// the gateway keeps the delivery latency of its writes
	// (DeliveryLatency); see Observer.
	Observer Observer
	// KnownContracts and KnownContractBytes bound the streams (and the
	// bytes of their names) whose newest contract version the gateway
	// remembers from the notices, to tell a join that shares an older
	// snapshot read, or resumes with since, the newer version. Past
	// either it remembers no new stream. Defaults DefaultKnownContracts
	// and DefaultKnownContractBytes.
	KnownContracts     int
	KnownContractBytes int
	// StreamLabels bounds the stream names that label the Observer's
	// client samples: the first StreamLabels streams to deliver an event
	// are named, later ones are OtherStream. Default DefaultStreamLabels.
	StreamLabels int
	// ClientLatencyEvery is the least time between two latency samples
	// of one connection that the gateway takes (more are dropped);
	// ClientLatencyMax is the largest sample it takes (larger ones are
	// refused). Defaults DefaultClientLatencyEvery (negative: none taken)
	// and DefaultClientLatencyMax.
	ClientLatencyEvery, ClientLatencyMax time.Duration
	Logger                               *slog.Logger
	// TracerProvider, if set, traces the delivery of each event whose
	// publish was traced (Events must be TracedEvents): one span per event
	// per gateway, with the number of local subscribers. Default: none.
	TracerProvider trace.TracerProvider
}

func (c Config) withDefaults() Config {
	defaults.Positive(&c.MaxFrameBytes, DefaultMaxFrameBytes)
	defaults.Positive(&c.QueueMessages, DefaultQueueMessages)
	defaults.Positive(&c.QueueBytes, DefaultQueueBytes)
	defaults.Positive(&c.PingInterval, DefaultPingInterval)
	defaults.Positive(&c.SSEKeepAlive, DefaultSSEKeepAlive)
	defaults.Positive(&c.SessionPosts, DefaultSessionPosts)
	defaults.Positive(&c.WriteTimeout, DefaultWriteTimeout)
	defaults.Positive(&c.AuthTimeout, DefaultAuthTimeout)
	defaults.Positive(&c.MaxSubscriptions, DefaultMaxSubscriptions)
	defaults.Positive(&c.MaxCatchUps, DefaultMaxCatchUps)
	defaults.Positive(&c.MaxCatchUpsTotal, DefaultMaxCatchUpsTotal)
	defaults.Positive(&c.SnapshotPageBytes, DefaultSnapshotPageBytes)
	if c.SnapshotCoalesce == 0 {
		c.SnapshotCoalesce = DefaultSnapshotCoalesce
	}
	defaults.Positive(&c.MaxNameBytes, streamapi.DefaultMaxNameBytes)
	defaults.Positive(&c.KnownContracts, DefaultKnownContracts)
	defaults.Positive(&c.KnownContractBytes, DefaultKnownContractBytes)
	if c.PresenceGrace == 0 { // negative: none
		c.PresenceGrace = DefaultPresenceGrace
	}
	defaults.Positive(&c.PresenceMaxMembers, DefaultPresenceMaxMembers)
	defaults.Positive(&c.PresenceMaxMetaBytes, DefaultPresenceMaxMetaBytes)
	defaults.Positive(&c.PresenceMaxPerConn, DefaultPresenceMaxPerConn)
	defaults.Positive(&c.PresenceMaxTotal, DefaultPresenceMaxTotal)
	defaults.Positive(&c.PresenceMaxTotalBytes, DefaultPresenceMaxTotalBytes)
	defaults.Positive(&c.PresenceRateBytes, DefaultPresenceRateBytes)
	defaults.Positive(&c.StreamLabels, DefaultStreamLabels)
	if c.ClientLatencyEvery == 0 { // negative: none taken
		c.ClientLatencyEvery = DefaultClientLatencyEvery
	}
	defaults.Positive(&c.ClientLatencyMax, DefaultClientLatencyMax)
	defaults.Logger(&c.Logger)
	return c
}

// Gateway is an http.Handler serving:
//
//	GET /                               multiplexed WebSocket (join/leave frames), or multiplexed SSE with Accept: text/event-stream
//	GET /stream/{stream}/{group}        WebSocket, or SSE with Accept: text/event-stream
//	GET /stream?stream=S&group=G        the same, for names a URL path cannot carry ("." and "..")
//	POST /stream/auth                   a fresh token for an SSE stream: {"session","token"}
//	POST /stream/session                frames for a multiplexed SSE stream: {"session","frames":[…]}
//
// Path segments are percent-decoded once, so %2F is a slash inside a name.
type Gateway struct {
	cfg    Config
	log    *slog.Logger
	tracer trace.Tracer // nil: tracing off
	hub    *hub
	// snapshots shares snapshot reads among the joins that need one.
	snapshots *snapshots
	pool      *writerPool
	presence  *presence
	origins   *origin.Policy
	cors      *cors.Cors
	// catchUps holds a token per snapshot or replay being built and
	// queued, MaxCatchUpsTotal at most.
	catchUps chan struct{}

	slowCloses atomic.Int64
	deliveries atomic.Int64    // live events handed to subscriptions
	resyncs    atomic.Int64    // subscriptions told to resync
	refusals   [2]atomic.Int64 // connections refused by auth, by Transport
	// refusalLog and slowLog limit the logs of refused connections and of
	// slow clients closed.
	refusalLog, slowLog ratelog.Limiter
	// labels names the streams the Observer's client samples may carry.
	labels         *streamLabels
	clockSkew      atomic.Int64   // deliveries whose commit time was ahead of the clock
	delivery       [2]latencyHist // by Transport
	latencyRefused atomic.Int64   // client latency samples refused

	mu    sync.Mutex
	conns map[*conn]struct{}
	// stopContracts ends the contract notices, or is nil.
	stopContracts func()
	contracts     knownContracts
	sessions      map[string]*conn // SSE streams by their Trine-Session id
	closed        bool
	wg            sync.WaitGroup // connections and the pinger
	stop          chan struct{}
}

// New returns a Gateway; Close stops it.
func New(cfg Config) (*Gateway, error) {
	if cfg.Backend == nil || cfg.Events == nil {
		return nil, errors.New("gateway: Backend and Events are required")
	}
	if cfg.AuthFunction != "" && cfg.Caller == nil {
		return nil, errors.New("gateway: AuthFunction needs a Caller")
	}
	if cfg.AuthFunction != "" && cfg.Tokens != nil {
		return nil, errors.New("gateway: use an auth function or tokens, not both")
	}
	cfg = cfg.withDefaults()
	g := &Gateway{cfg: cfg, log: cfg.Logger, tracer: tracing.Tracer(cfg.TracerProvider), conns: make(map[*conn]struct{}), sessions: make(map[string]*conn), stop: make(chan struct{}),
		catchUps: make(chan struct{}, cfg.MaxCatchUpsTotal),
		origins: &origin.Policy{Origins: cfg.AllowedOrigins, Hosts: cfg.AllowedHosts, Logger: cfg.Logger,
			OriginsSetting: "--allowed-origins", HostsSetting: "--allowed-hosts"}}
	// Cross-origin EventSource (and its preflight, for Last-Event-ID):
	// the origins the policy allows get CORS headers, credentials
	// included (the token cookie). WebSockets do not use CORS.
	g.cors = cors.New(cors.Options{
		AllowOriginVaryRequestFunc: func(r *http.Request, _ string) (bool, []string) { return g.origins.Check(r) == nil, nil },
		AllowedMethods:             []string{http.MethodGet, http.MethodPost},
		AllowedHeaders:             []string{"Last-Event-ID", "Cache-Control", "Accept", "Content-Type"},
		ExposedHeaders:             []string{SessionHeader},
		AllowCredentials:           true,
		MaxAge:                     600,
	})
	g.labels = newStreamLabels(cfg.StreamLabels)
	g.contracts = knownContracts{maxStreams: cfg.KnownContracts, maxBytes: cfg.KnownContractBytes, v: map[string]uint64{}}
	g.hub = newHub(g)
	g.snapshots = newSnapshots(g)
	g.pool = newWriterPool(cfg.Writers)
	g.presence = newPresence(g)
	if ce, ok := cfg.Events.(ContractEvents); ok {
		stop, err := ce.SubscribeContracts(g.contractChanged)
		if err != nil {
			g.log.Warn("stream contract notices unavailable: subscribers get no schema frames", "error", err)
		}
		g.stopContracts = stop
	}
	g.wg.Add(1)
	go g.pinger()
	return g, nil
}

// knownContracts is the newest contract version of each stream this
// gateway was told of, for up to maxStreams streams and maxBytes of their
// names (then it takes no new stream; the notices still reach the
// subscriptions).
type knownContracts struct {
	maxStreams, maxBytes int

	mu    sync.Mutex
	v     map[string]uint64
	bytes int
}

func (k *knownContracts) saw(stream string, version uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.v[stream]; ok {
		k.v[stream] = max(old, version)
		return
	}
	if len(k.v) >= k.maxStreams || k.bytes+len(stream) > k.maxBytes {
		return
	}
	k.v[stream] = version
	k.bytes += len(stream)
}

func (k *knownContracts) version(stream string) uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.v[stream]
}

// contractChanged sends a schema frame to every subscription of stream
// that was not told version or a newer one (a notice can arrive after a
// subscriber's sync already told it); a subscription still catching up
// gets it after its catch-up (goLive).
func (g *Gateway) contractChanged(stream string, version uint64) {
	g.contracts.saw(stream, version)
	g.mu.Lock()
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	now := time.Now()
	for _, c := range conns {
		c.mu.Lock()
		var subs []*subscription
		for s := range c.subs.all {
			if s.stream == stream {
				subs = append(subs, s)
			}
		}
		c.mu.Unlock()
		for _, s := range subs {
			s.mu.Lock()
			switch {
			case s.cancelled:
			case !s.caughtUp:
				s.contractDue = max(s.contractDue, version)
			case version > s.contract:
				s.contract = version
				c.enqueue(out{data: wire.Schema(s.stream, s.group, s.item, version, now), sub: s.quotedID})
			}
			s.mu.Unlock()
		}
	}
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.cors.ServeHTTP(w, r, g.serve)
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/stream/auth" {
		g.serveAuth(w, r)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == "/stream/session" {
		g.serveSession(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.EscapedPath()
	switch {
	case p == "/":
		g.serveMux(w, r)
	case p == "/stream":
		q := r.URL.Query()
		g.serveGroup(w, r, q.Get("stream"), q.Get("group"))
	case strings.HasPrefix(p, "/stream/"):
		segs := strings.Split(p[len("/stream/"):], "/")
		if len(segs) != 2 {
			http.NotFound(w, r)
			return
		}
		stream, err1 := url.PathUnescape(segs[0])
		group, err2 := url.PathUnescape(segs[1])
		if err1 != nil || err2 != nil {
			http.Error(w, "bad percent-encoding in the path", http.StatusBadRequest)
			return
		}
		g.serveGroup(w, r, stream, group)
	default:
		http.NotFound(w, r)
	}
}

// SetWriters makes the pool of goroutines writing to WebSockets n strong
// (at least 1), as when the CPUs the process may use change: writers past
// those CPUs only take turns sooner, each with fewer frames to write.
func (g *Gateway) SetWriters(n int) { g.pool.resize(n) }

// Close closes every connection (WebSocket clients get 1001), cuts those
// that do not finish within two seconds, and waits for their goroutines.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	close(g.stop)
	if g.stopContracts != nil {
		g.stopContracts()
	}
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		c.shutdown(wsconn.CloseGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * wsconn.CloseGrace): // peers that do not read: cut them
		for _, c := range conns {
			c.kill()
		}
		<-done
	}
	g.snapshots.wg.Wait() // every reader has given up: reads end
	g.presence.close()
	g.pool.close()
	return nil
}

// Stats is a snapshot of a gateway's counters.
type Stats struct {
	// Conns is the number of open connections, and ConnsByTransport
	// the same by Transport.
	Conns            int
	ConnsByTransport [2]int
	// Groups is the number of groups the gateway receives events for.
	Groups int
	// SlowConsumerCloses counts connections closed for falling behind.
	SlowConsumerCloses int64
	// SnapshotReads and HistoryReads count the reads the gateway asked
	// its backend for (snapshot pages included), shared ones once.
	SnapshotReads, HistoryReads int64
	// PresenceSubscriptions is the number of presence subscriptions held;
	// PresenceGroups the groups whose presence the gateway tracks.
	PresenceSubscriptions, PresenceGroups int
	// PresenceWriteErrors counts this gateway's presence entries that
	// could not be written to the store (retried at the next flush).
	PresenceWriteErrors int64
	// Deliveries counts the live events handed to subscriptions (not
	// snapshots or catch-up).
	Deliveries int64
	// Resyncs counts the subscriptions told to resync: their since was
	// past the history, so they got a fresh snapshot instead.
	Resyncs int64
	// AuthRefusals counts the connections refused by the auth function
	// or the token check, by transport.
	AuthRefusals [2]int64
	// DeliveryClockSkew counts the live events written whose commit time
	// was ahead of this gateway's clock (observed as 0).
	DeliveryClockSkew int64
	// ClientLatencyRefused counts the latency samples of pages that were
	// refused (invalid, or too frequent).
	ClientLatencyRefused int64
}

// Transport is how a browser connection is carried, an index of
// Stats.AuthRefusals.
type Transport int

// The transports.
const (
	TransportWebSocket Transport = iota
	TransportSSE
)

// String is the transport's metric label: ws or sse.
func (t Transport) String() string {
	if t == TransportSSE {
		return "sse"
	}
	return "ws"
}

// transportOf is r's transport.
func transportOf(r *http.Request) Transport {
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		return TransportSSE
	}
	return TransportWebSocket
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats {
	g.mu.Lock()
	st := Stats{Conns: len(g.conns), SlowConsumerCloses: g.slowCloses.Load(), Deliveries: g.deliveries.Load(),
		SnapshotReads: g.snapshots.reads.Load(), HistoryReads: g.snapshots.historyReads.Load(), Resyncs: g.resyncs.Load(),
		DeliveryClockSkew: g.clockSkew.Load(), ClientLatencyRefused: g.latencyRefused.Load()}
	for c := range g.conns {
		if c.sse != nil {
			st.ConnsByTransport[TransportSSE]++
		} else {
			st.ConnsByTransport[TransportWebSocket]++
		}
	}
	for i := range g.refusals {
		st.AuthRefusals[i] = g.refusals[i].Load()
	}
	g.mu.Unlock()
	g.hub.mu.Lock()
	st.Groups = len(g.hub.groups)
	g.hub.mu.Unlock()
	g.presence.mu.Lock()
	st.PresenceSubscriptions, st.PresenceGroups = g.presence.subs, len(g.presence.groups)
	g.presence.mu.Unlock()
	st.PresenceWriteErrors = g.presence.writeErrors.Load()
	return st
}

func (g *Gateway) add(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.conns[c] = struct{}{}
	if c.session != "" {
		g.sessions[c.session] = c
	}
	g.wg.Add(1)
	if t := c.token.Load(); t != nil { // the connection is set up: its exp may close it
		c.expiry = time.AfterFunc(time.Until(t.Expires), c.tokenExpired)
	}
	return true
}

func (g *Gateway) remove(c *conn) {
	g.mu.Lock()
	delete(g.conns, c)
	if c.session != "" {
		delete(g.sessions, c.session)
	}
	g.mu.Unlock()
	g.wg.Done()
}

// pinger pings every WebSocket each interval and closes those silent for
// two: one goroutine for all connections, no timer per socket.
func (g *Gateway) pinger() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-t.C:
			g.mu.Lock()
			conns := make([]*conn, 0, len(g.conns))
			for c := range g.conns {
				conns = append(conns, c)
			}
			g.mu.Unlock()
			for _, c := range conns {
				c.ping(now, 2*g.cfg.PingInterval)
			}
		}
	}
}

// checkOrigin refuses requests for hosts that are not this listener's
// (DNS rebinding) and cross-site browser connections that are not allowed.
func (g *Gateway) checkOrigin(r *http.Request) *origin.Refusal { return g.origins.Check(r) }

// authInput is the auth function's payload.
type authInput struct {
	Headers     map[string]string   `json:"headers"`
	QueryParams map[string][]string `json:"query_params"`
	Path        string              `json:"path"`
	Addr        string              `json:"addr"`
}

// authenticate runs the auth function; it fails closed.
func (g *Gateway) authenticate(r *http.Request) (json.RawMessage, error) {
	if g.cfg.AuthFunction == "" {
		return nil, nil
	}
	in := authInput{Headers: map[string]string{}, QueryParams: r.URL.Query(), Path: r.URL.Path, Addr: r.RemoteAddr}
	for k, vs := range r.Header {
		if len(vs) > 0 {
			in.Headers[strings.ToLower(k)] = vs[len(vs)-1]
		}
	}
	payload, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.AuthTimeout)
	defer cancel()
	out, err := g.cfg.Caller.Trigger(ctx, engine.Call{FunctionID: g.cfg.AuthFunction, Payload: payload})
	if err != nil {
		return nil, err
	}
	// Only an object with a context admits: {}, {"allowed":false},
	// {"unauthorized":true} and anything else refuse.
	var res map[string]json.RawMessage
	if err := json.Unmarshal(out, &res); err != nil || res == nil {
		return nil, errors.New("auth function returned no {context} object")
	}
	c, ok := res["context"]
	if !ok {
		return nil, errors.New("auth function's answer has no context")
	}
	return c, nil
}

// admission is what a connection was admitted with.
type admission struct {
	ctx   json.RawMessage // its context, for the join handlers
	token *jwtauth.Token  // with Config.Tokens
}

// Readable admits a plain HTTP request (GET /schemas on another listener)
// as the gateway admits a connection, without the origin check: with
// tokens, from the token query parameter, the cookie or an
// "Authorization: Bearer" header; with an auth function, by calling it.
// It returns which streams the caller may read: with a token, those its
// streams claim names; otherwise every stream. On a refusal it has
// answered r (401) and returns false.
func (g *Gateway) Readable(w http.ResponseWriter, r *http.Request) (func(stream string) bool, bool) {
	if g.cfg.Tokens != nil {
		raw := r.URL.Query().Get(TokenParam)
		if ck, err := r.Cookie(TokenCookie); raw == "" && err == nil {
			raw = ck.Value
		}
		if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); raw == "" && ok {
			raw = strings.TrimSpace(h)
		}
		if raw == "" {
			http.Error(w, "unauthorized: no token (the "+TokenParam+" query parameter, the "+TokenCookie+" cookie or an Authorization: Bearer header)", http.StatusUnauthorized)
			return nil, false
		}
		tok, err := g.cfg.Tokens.Verify(raw)
		if err != nil {
			http.Error(w, "unauthorized: "+err.Error(), http.StatusUnauthorized)
			return nil, false
		}
		return tok.AllowsStream, true
	}
	if _, err := g.authenticate(r); err != nil {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return nil, false
	}
	return func(string) bool { return true }, true
}

// admit checks the origin and runs auth; on failure it has answered r.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request) (admission, bool) {
	if ref := g.checkOrigin(r); ref != nil {
		http.Error(w, ref.Reason, ref.Status)
		return admission{}, false
	}
	if g.cfg.Ready != nil {
		if err := g.cfg.Ready(); err != nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return admission{}, false
		}
	}
	if g.cfg.Tokens != nil {
		raw := r.URL.Query().Get(TokenParam)
		if ck, err := r.Cookie(TokenCookie); raw == "" && err == nil {
			raw = ck.Value
		}
		if raw == "" {
			g.refused(w, r, "unauthorized: no token (the "+TokenParam+" query parameter or the "+TokenCookie+" cookie)")
			return admission{}, false
		}
		tok, err := g.cfg.Tokens.Verify(raw)
		if err != nil {
			g.refused(w, r, "unauthorized: "+err.Error())
			return admission{}, false
		}
		return admission{ctx: tok.Claims, token: &tok}, true
	}
	authCtx, err := g.authenticate(r)
	if err != nil {
		g.refusals[transportOf(r)].Add(1)
		g.refusalLog.Warn(g.log, "stream connection refused", "remote", r.RemoteAddr, "path", r.URL.Path, "error", err)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return admission{}, false
	}
	return admission{ctx: authCtx}, true
}

// refused answers 401 with reason, and logs it (rate-limited).
func (g *Gateway) refused(w http.ResponseWriter, r *http.Request, reason string) {
	g.refusals[transportOf(r)].Add(1)
	g.refusalLog.Warn(g.log, "stream connection refused", "remote", r.RemoteAddr, "path", r.URL.Path, "error", reason)
	http.Error(w, reason, http.StatusUnauthorized)
}

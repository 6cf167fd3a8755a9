package trine

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trinehq/trine/internal/ratelog"
	"github.com/trinehq/trine/internal/tlsconf"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Runtime is what the SDK reports as the worker's runtime.
const Runtime = "go"

// Worker is a connection to the engine that serves functions and makes calls.
type Worker struct {
	opts    options
	log     *slog.Logger
	targets []string
	conns   []*grpc.ClientConn
	initErr error

	ctx      context.Context // ends when Close gives up on draining
	stop     context.CancelFunc
	loopDone chan struct{}
	quit     chan struct{} // closed by Close once handlers are done: sessions flush and end
	firstUp  chan struct{}
	upOnce   sync.Once
	closeMu  sync.Mutex
	closeErr error
	closed   bool
	sem      chan struct{}
	seq      atomic.Uint64
	tracers  atomic.Pointer[tracerCache] // see tracer

	// connectLog limits the warnings of failed attempts to connect.
	connectLog ratelog.Limiter

	mu           sync.Mutex
	sess         *session      // the live session, or nil
	sessions     uint64        // sessions established so far
	lastErr      *Error        // why the last attempt to connect failed, while there is no session
	attempts     int           // attempts to connect since the last session (or the start)
	downSince    time.Time     // when the last session ended (or the worker started)
	target       string        // the address of the attempt under way
	sessChanged  chan struct{} // closed and replaced whenever sess changes
	functions    map[string]*function
	triggerTypes map[string]*triggerType
	triggers     map[string]*trigger
	draining     bool // Close has begun: new invocations are refused
	handlers     sync.WaitGroup
}

// NewWorker creates a worker for the engine at addr ("host:port", or a
// comma-separated list tried in turn; "grpcs://host:port" connects over
// TLS, see WithTLS) and starts connecting in the background; Connect waits
// for the first connection. A malformed address or option is an
// invalid_argument error at once, and then nothing is started. With
// WithDialer the addresses are the dialer's to read and are not checked.
func NewWorker(addr string, opts ...Option) (*Worker, error) {
	w := newWorker(addr, opts)
	if w.initErr != nil {
		return nil, w.initErr
	}
	return w, nil
}

// RegisterWorker is NewWorker for callers that take errors later: it never
// fails, and a bad option or address is reported by Connect and every
// later call. New code should call NewWorker, which reports them at once;
// RegisterWorker stays for the programs written against it.
func RegisterWorker(addr string, opts ...Option) *Worker { return newWorker(addr, opts) }

func newWorker(addr string, opts []Option) *Worker {
	o, optErr := applyOptions(defaultOptions(), opts, Option.applyWorker)
	ctx, stop := context.WithCancel(context.Background())
	w := &Worker{
		opts: o, log: o.logger, ctx: ctx, stop: stop, downSince: time.Now(),
		loopDone: make(chan struct{}), quit: make(chan struct{}), firstUp: make(chan struct{}), sessChanged: make(chan struct{}),
		functions: make(map[string]*function), triggerTypes: make(map[string]*triggerType), triggers: make(map[string]*trigger),
	}
	if o.concurrency > 0 {
		w.sem = make(chan struct{}, o.concurrency)
	}
	w.initErr = optErr
	if w.initErr == nil {
		w.initErr = o.validate()
	}
	for _, t := range strings.Split(addr, ",") {
		if t = strings.TrimSpace(t); t != "" {
			w.targets = append(w.targets, t)
		}
	}
	if w.initErr == nil && len(w.targets) == 0 {
		w.initErr = errorf(CodeInvalidArgument, "no engine address")
	}
	if len(w.targets) > 0 {
		w.target = w.targets[0]
	}
	for _, t := range w.targets {
		if w.initErr != nil {
			break
		}
		host, useTLS := tlsconf.SplitScheme(t)
		if err := checkAddress(host, o.dialer != nil); err != nil {
			w.initErr = errorf(CodeInvalidArgument, "engine address %q: %v", t, err)
			break
		}
		cc, err := grpc.NewClient(host, w.dialOptions(useTLS)...)
		if err != nil {
			w.initErr = errorf(CodeInvalidArgument, "engine address %s: %v", t, err)
			break
		}
		w.conns = append(w.conns, cc)
	}
	if w.initErr != nil {
		for _, cc := range w.conns {
			_ = cc.Close()
		}
		stop()
		close(w.loopDone)
		return w
	}
	go w.loop()
	return w
}

// checkAddress vets host, an address without its scheme: host:port with a
// port from 1 to 65535, unless a dialer reads it.
func checkAddress(host string, dialer bool) error {
	if dialer {
		return nil
	}
	_, port, err := net.SplitHostPort(host)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

// windowBytes is the HTTP/2 flow-control window of the worker's stream
// and connection: the most bytes the engine may send ahead of what the
// worker reads.
const windowBytes = 1 << 20

func (w *Worker) dialOptions(useTLS bool) []grpc.DialOption {
	creds := insecure.NewCredentials()
	switch {
	case w.opts.tls != nil:
		creds = credentials.NewTLS(w.opts.tls)
	case useTLS:
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if md := w.opts.metadata(); len(md) > 0 {
		opts = append(opts, grpc.WithPerRPCCredentials(rpcMetadata(md)))
	}
	if w.opts.dialer != nil {
		opts = append(opts, grpc.WithContextDialer(w.opts.dialer))
	}
	return append(opts,
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: w.opts.keepalive, Timeout: w.opts.keepalive / 2, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: w.opts.backoffMin, Multiplier: 2, Jitter: 0.2, MaxDelay: w.opts.backoffMax},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)),
		// Fixed flow-control windows, as the engine's: gRPC's dynamic
		// window sends a BDP ping, and gets its ack, with nearly every
		// small message read. A larger message still gets the window it
		// needs as it is read.
		grpc.WithStaticStreamWindowSize(windowBytes),
		grpc.WithStaticConnWindowSize(windowBytes),
	)
}

// metadata is what every RPC carries: WithHeader's headers, and WithToken's
// token as "authorization: Bearer <token>".
func (o *options) metadata() map[string]string {
	md := make(map[string]string, len(o.header)+1)
	for k, vs := range o.header {
		md[strings.ToLower(k)] = strings.Join(vs, ", ")
	}
	if o.token != "" {
		md["authorization"] = "Bearer " + o.token
	}
	return md
}

// rpcMetadata is sent with every RPC (WithHeader, WithToken).
type rpcMetadata map[string]string

func (m rpcMetadata) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return m, nil
}

// RequireTransportSecurity is false so that loopback development works
// without TLS; WithToken's documentation asks for TLS elsewhere.
func (rpcMetadata) RequireTransportSecurity() bool { return false }

// Connect blocks until the worker's first connection to the engine is up,
// ctx ends, or the worker is closed.
func (w *Worker) Connect(ctx context.Context) error {
	if w.initErr != nil {
		return w.initErr
	}
	select {
	case <-w.firstUp:
		return nil
	case <-ctx.Done():
		return w.notConnected(ctx.Err())
	case <-w.loopDone:
		return ErrClosed
	}
}

// notConnected is the error of a wait for a session that ended with ctx's
// err: its code, what the worker was doing (connecting to which engine,
// for how long), and why the last attempt to connect failed.
func (w *Worker) notConnected(err error) *Error {
	e := asError(err)
	w.mu.Lock()
	last, attempts, target, since := w.lastErr, w.attempts, w.target, time.Since(w.downSince).Round(time.Millisecond)
	w.mu.Unlock()
	doing := fmt.Sprintf("%s while connecting to the engine at %s (%d failed attempts in %s)", e.Message, target, attempts, since)
	if last == nil {
		return errorf(e.Code, "not connected: %s", doing)
	}
	return errorf(e.Code, "not connected: %s; the last attempt failed: %s", doing, last.Message)
}

// Connected reports whether the worker has a session with an engine now.
// Connect waits for the first session only; a session lost later is
// re-established in the background, and Connected is false meanwhile.
func (w *Worker) Connected() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sess != nil
}

// Sessions is how many sessions the worker has established with engines
// since it started: one more than its reconnects, once connected.
func (w *Worker) Sessions() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sessions
}

// ID is the worker id the engine gave the current (or last) session.
func (w *Worker) ID() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sess == nil {
		return ""
	}
	return w.sess.workerID
}

// loop keeps a session up until the worker closes. A failed attempt to
// connect is logged at warn (at most one every ratelog.DefaultEvery, with
// the number held back), and so is a lost session.
func (w *Worker) loop() {
	defer close(w.loopDone)
	var prevID, token string
	for attempt, i := 0, 0; ; i++ {
		cc, target := w.conns[i%len(w.conns)], w.targets[i%len(w.targets)]
		w.mu.Lock()
		w.target = target
		w.mu.Unlock()
		started := time.Now()
		id, tok, err := w.runSession(cc, prevID, token)
		if id != "" {
			prevID, token = id, tok
		} else if !w.quitting() {
			err = w.connectFailed(target, err)
		}
		if w.quitting() {
			return
		}
		if id != "" && time.Since(started) > w.opts.backoffMax {
			attempt = 0
		}
		delay := w.backoff(attempt)
		attempt++
		w.mu.Lock()
		failed := 0
		if id == "" {
			w.attempts++
			failed = w.attempts
		}
		w.mu.Unlock()
		if id != "" {
			w.log.Warn("engine connection lost; reconnecting", "address", target, "error", err, "retry_in", delay)
		} else if held, ok := w.connectLog.Allow(0); ok {
			w.log.Warn("cannot connect to the engine; retrying", "address", target, "error", err, "attempt", failed,
				"retry_in", delay, "not_logged", held)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-w.quit:
			t.Stop()
			return
		case <-w.ctx.Done():
			t.Stop()
			return
		}
	}
}

func (w *Worker) quitting() bool {
	select {
	case <-w.quit:
		return true
	default:
		return w.ctx.Err() != nil
	}
}

func (w *Worker) backoff(attempt int) time.Duration {
	d := float64(w.opts.backoffMin) * math.Pow(2, float64(min(attempt, 30)))
	d = min(d, float64(w.opts.backoffMax))
	return time.Duration(d * (0.8 + 0.4*rand.Float64()))
}

// connectFailed records why connecting to target failed, naming the fix
// when it is a TLS mismatch (gRPC reports only "error reading server
// preface: EOF" or a broken pipe), and returns that reason.
func (w *Worker) connectFailed(target string, err error) error {
	if status.Code(err) == codes.Unavailable {
		host, useTLS := tlsconf.SplitScheme(target)
		tc := w.opts.tls
		if tc == nil && useTLS {
			tc = &tls.Config{}
		}
		switch tlsconf.Diagnose(w.ctx, host, tc, w.opts.dialer) {
		case tlsconf.ServerSpeaksTLS:
			err = errorf(CodeUnavailable, "the engine at %s speaks TLS: use grpcs://%s, or WithTLS", target, host)
		case tlsconf.ClientCertRequired:
			err = errorf(CodeUnavailable, "the engine at %s requires a client certificate (mTLS): give one in WithTLS's Certificates", target)
		}
	}
	e := asError(err)
	if _, ok := err.(*Error); !ok {
		e = errorf(CodeUnavailable, "%s: %s", target, status.Convert(err).Message())
	}
	w.mu.Lock()
	w.lastErr = e
	w.mu.Unlock()
	return e
}

// setSession publishes s as the live session (nil: none) and wakes waiters.
func (w *Worker) setSession(s *session) {
	w.mu.Lock()
	w.sess = s
	if s != nil {
		w.lastErr, w.attempts = nil, 0
		w.sessions++
	} else {
		w.downSince = time.Now()
	}
	close(w.sessChanged)
	w.sessChanged = make(chan struct{})
	w.mu.Unlock()
	if s != nil {
		w.upOnce.Do(func() { close(w.firstUp) })
	}
}

// liveSession waits for a session until ctx ends or the worker closes.
func (w *Worker) liveSession(ctx context.Context) (*session, error) {
	if w.initErr != nil {
		return nil, w.initErr
	}
	for {
		w.mu.Lock()
		s, changed := w.sess, w.sessChanged
		w.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			e := w.notConnected(ctx.Err())
			return nil, errorf(CodeUnavailable, "%s", e.Message)
		case <-w.ctx.Done():
			return nil, ErrClosed
		}
	}
}

func (w *Worker) newID() string { return strconv.FormatUint(w.seq.Add(1), 36) }

// Close stops taking calls: the worker leaves the replica set of each of
// its functions, lets running handlers finish within WithCloseTimeout (then
// cancels their contexts), and closes the connection. It returns once every
// goroutine the worker started has exited, or reports the handlers that
// ignored cancellation. Close is idempotent.
func (w *Worker) Close() error {
	w.closeMu.Lock()
	defer w.closeMu.Unlock()
	if w.closed {
		return w.closeErr
	}
	w.closed = true
	if w.initErr != nil {
		return nil
	}
	deadline := time.Now().Add(w.opts.closeTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	w.mu.Lock()
	s := w.sess
	ids := make([]string, 0, len(w.functions))
	for id := range w.functions {
		ids = append(ids, id)
	}
	w.mu.Unlock()
	if s != nil {
		for _, id := range ids {
			if err := s.request(ctx, unregisterFunctionFrame(id)); err != nil {
				w.log.Debug("unregister on close", "function_id", id, "error", err)
			}
		}
	}
	w.mu.Lock()
	w.draining = true
	w.mu.Unlock()
	idle := make(chan struct{})
	go func() { w.handlers.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-ctx.Done():
		w.log.Warn("handlers still running at close timeout; cancelling them")
	}
	close(w.quit) // flush results and half-close; the engine then ends the session
	t := time.NewTimer(w.opts.closeTimeout)
	defer t.Stop()
	select {
	case <-w.loopDone:
	case <-t.C:
	}
	w.stop()
	<-w.loopDone
	for _, cc := range w.conns {
		_ = cc.Close()
	}
	t.Reset(w.opts.closeTimeout)
	select {
	case <-idle:
	case <-t.C:
		w.closeErr = errorf(CodeDeadlineExceeded, "handlers ignored cancellation and are still running")
	}
	return w.closeErr
}

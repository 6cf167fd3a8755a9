package iiiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/httpinvoke"
	"github.com/trinehq/trine/internal/workgroup"
	"github.com/trinehq/trine/internal/wsconn"
)

// maxHeld bounds the messages held while a worker's namespace is not
// known; past it they are applied at once.
const maxHeld = 10_000

// conn is one worker connection: the engine.Peer of its session.
//
// Goroutines: run reads and dispatches messages; a writer sends the
// outbound queue; a registrar applies registrations and starts invocations
// in arrival order (holding them until the namespace is known); a pinger
// checks liveness; a watcher ends the connection when the engine closes the
// session. Each of the worker's calls runs on its own goroutine. All of
// them end before run returns.
type conn struct {
	*wsconn.Conn
	srv  *Server
	sess *engine.Session
	log  *slog.Logger

	ctx      context.Context // ends when the connection ends
	cancel   context.CancelCauseFunc
	out      *wsconn.Queue // bounded by SendQueue messages and maxQueuedBytes
	wake     chan struct{} // a message was queued for the registrar
	resolved chan struct{} // closed once the worker has described itself
	left     chan struct{} // closed when the reader has stopped: the worker is gone
	resolve  sync.Once
	stopOnce sync.Once
	// running is the connection's goroutines: writer, registrar, pinger
	// and the work the reader hands off; run waits for them as it returns.
	running workgroup.Group
	// calls hands a call to an idle caller goroutine (goCall), of which
	// there are idleCallers.
	calls       chan func()
	idleCallers atomic.Int32

	mu          sync.Mutex
	configs     map[string]string // trigger id -> request id of a registertrigger sent to this provider
	work        []queued          // the registrar's work, in arrival order
	queuedBytes int64
	owedBytes   int64 // answers waiting for room in the send queue
	owed        int
	inflight    int // the worker's own calls still running
	// viaHTTP are the worker's HTTP-invoked functions, by the id it
	// registered: the engine calls their URL instead of the worker.
	viaHTTP     map[string]*httpinvoke.Function
	httpRunning int // HTTP-invoked calls running
}

// queued is a message waiting for the registrar, with its size on the wire.
type queued struct {
	m    *inbound
	size int64
}

var (
	_ engine.Peer      = (*conn)(nil)
	_ engine.Describer = (*conn)(nil)
)

func newConn(s *Server, sock *wsconn.Conn, addr, identity string, g *engine.Grant) *conn {
	ctx, cancel := context.WithCancelCause(s.ctx)
	c := &conn{
		Conn: sock, srv: s, ctx: ctx, cancel: cancel,
		wake:     make(chan struct{}, 1),
		calls:    make(chan func()),
		resolved: make(chan struct{}),
		left:     make(chan struct{}),
		configs:  make(map[string]string),
		viaHTTP:  make(map[string]*httpinvoke.Function),
	}
	sess, err := s.e.AttachGranted(engine.WorkerInfo{Name: "iii-worker", Runtime: "iii", Transport: "iii", Addr: addr, Identity: identity}, c, g)
	if err != nil {
		cancel(err)
		sock.Close(wsconn.CloseTryLater, err.Error())
		sock.Drain()
		return nil
	}
	c.sess = sess
	c.log = s.log.With(engine.LogWorkerID, sess.ID())
	c.out = wsconn.NewQueue(ctx, sock, s.cfg.SendQueue, c.maxQueuedBytes())
	return c
}

// run serves the connection until the worker or the engine ends it.
func (c *conn) run() {
	defer c.finish()
	c.queue(workerRegistered{Type: typeWorkerRegistered, WorkerID: c.sess.ID(), ReattachToken: c.sess.ReattachToken()})
	c.running.Go(c.write)
	c.running.Go(c.registrar)
	c.running.Go(c.ping)
	c.running.Go(func() {
		select {
		case <-c.sess.Done():
			select {
			case <-c.left: // the worker's own close frame is answered below
			default:
				c.stop(wsconn.CloseGoingAway, "worker session closed by the engine")
			}
		case <-c.ctx.Done():
		}
	})
	for {
		op, b, err := c.Next()
		if err != nil {
			// The worker is gone from its close frame (or the end of
			// its stream) on, not from the end of its TCP connection,
			// which a busy worker closes up to wsconn.CloseGrace later:
			// its registrations go, and their providers are told,
			// before its close frame is answered and before anything a
			// worker does next can find them in place.
			close(c.left)
			c.sess.Close()
			if code, reason, ok := wsconn.CloseCode(err); ok {
				var pc *wsconn.PeerClosed
				if !errors.As(err, &pc) {
					c.log.Info("iii worker broke the WebSocket protocol; disconnecting", "error", err)
				}
				c.stop(code, reason)
				c.Drain()
			}
			c.log.Debug("iii worker connection ended", "error", err)
			return
		}
		c.handle(op, b)
	}
}

// maxQueuedBytes bounds what a worker may have waiting for the registrar,
// in message bytes: the reader never blocks on the registrar (a registrar
// waiting for this worker's own answer as a trigger provider would
// otherwise deadlock), so the queue is bounded here instead.
func (c *conn) maxQueuedBytes() int64 { return 16 * c.srv.cfg.MaxMessageBytes }

// finish releases everything once the reader has stopped.
func (c *conn) finish() {
	c.sess.Close()
	c.cancel(errors.New("connection closed"))
	c.running.Wait()
	_ = c.NC.Close()
}

// stop ends the connection: it sends a close frame, and the reader, which
// gets the worker's answer (or stops waiting for it after wsconn.CloseGrace),
// ends run.
func (c *conn) stop(code int, reason string) {
	c.stopOnce.Do(func() {
		c.cancel(errors.New(reason))
		// A write stuck on a worker that does not read gives way within
		// wsconn.CloseGrace instead of WriteTimeout.
		_ = c.NC.SetWriteDeadline(time.Now().Add(wsconn.CloseGrace))
		if c.Close(code, reason) {
			_ = c.NC.SetReadDeadline(time.Now().Add(wsconn.CloseGrace))
		}
	})
}

// write sends the outbound queue until the connection ends.
func (c *conn) write() {
	if err := c.out.Run(); err != nil {
		if c.ctx.Err() == nil {
			c.log.Info("iii worker write failed; disconnecting", "error", err)
		}
		c.cancel(err)
		_ = c.NC.Close()
	}
}

// ping pings the worker every PingInterval; a worker from which nothing
// was read for PingInterval plus WriteTimeout is disconnected.
func (c *conn) ping() {
	cfg := c.srv.cfg
	t := time.NewTicker(cfg.PingInterval)
	defer t.Stop()
	ping := wsconn.Frame(wsconn.OpPing, nil)
	for {
		select {
		case <-t.C:
			if time.Since(c.LastRead()) > cfg.PingInterval+cfg.WriteTimeout {
				c.log.Info("iii worker did not answer pings; disconnecting", "silent_for", time.Since(c.LastRead()))
				_ = c.NC.Close()
				return
			}
			if err := c.Conn.Write(ping); err != nil {
				return
			}
		case <-c.ctx.Done():
			return
		}
	}
}

// encode frames v as a text message within MaxMessageBytes.
func (c *conn) encode(v any) ([]byte, error) {
	p, err := json.Marshal(v)
	if err != nil {
		return nil, engine.Errorf(codes.Internal, "encode message: %v", err)
	}
	if int64(len(p)) > c.srv.cfg.MaxMessageBytes {
		return nil, engine.Errorf(codes.MessageTooLarge, "message is %d bytes, the limit is %d", len(p), c.srv.cfg.MaxMessageBytes)
	}
	return wsconn.Frame(wsconn.OpText, p), nil
}

// maxHeader is the longest frame header. A call's messages are encoded
// after maxHeader bytes (newFrame), so that frame can put the header in
// front of them without a copy.
const maxHeader = 10

// newFrame is a buffer for a message of about size bytes, for frame.
func newFrame(size int) []byte { return make([]byte, maxHeader, maxHeader+size) }

// frame makes a text frame of a message appended to newFrame's buffer
// (err: the encoding's), within MaxMessageBytes.
func (c *conn) frame(b []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, engine.Errorf(codes.Internal, "encode message: %v", err)
	}
	n := len(b) - maxHeader
	if int64(n) > c.srv.cfg.MaxMessageBytes {
		return nil, engine.Errorf(codes.MessageTooLarge, "message is %d bytes, the limit is %d", n, c.srv.cfg.MaxMessageBytes)
	}
	h := len(wsconn.AppendHeader(b[:0], wsconn.OpText, true, n))
	copy(b[maxHeader-h:], b[:h])
	return b[maxHeader-h:], nil
}

// send queues a message, waiting for room until ctx or the connection ends.
func (c *conn) send(ctx context.Context, v any) error {
	b, err := c.encode(v)
	if err != nil {
		return err
	}
	return c.sendFrame(ctx, b)
}

// sendFrame is send for an encoded message.
func (c *conn) sendFrame(ctx context.Context, b []byte) error {
	switch err := c.out.Put(ctx, b); {
	case err == nil:
		return nil
	case errors.Is(err, wsconn.ErrQueueFull):
		return engine.Errorf(codes.Overloaded, "worker %s is not reading its connection: %d bytes queued", c.sess.ID(), c.out.Bytes())
	case c.ctx.Err() != nil:
		return engine.Errorf(codes.WorkerDisconnected, "worker %s disconnected", c.sess.ID())
	default:
		return engine.Errorf(codes.Overloaded, "worker %s is not reading its connection", c.sess.ID())
	}
}

// answer sends a message the worker is owed (a pong, a result, an error)
// without waiting: straight into the send queue, or, when that is full, to
// a goroutine that waits for room. A worker that does not read while it is
// owed more than SendQueue answers or maxQueuedBytes is disconnected
// (1008), so that a peer flooding pings or calls and never reading costs
// bounded memory and goroutines.
func (c *conn) answer(v any) error {
	return c.answerFrame(c.encode(v))
}

// answerFrame is answer for an encoded message (err: the encoding's).
func (c *conn) answerFrame(b []byte, err error) error {
	if err != nil {
		return err
	}
	size := int64(len(b))
	if c.out.TryPut(b) {
		return nil
	}
	c.mu.Lock()
	if c.owed+1 > c.srv.cfg.SendQueue || c.owedBytes+size > c.maxQueuedBytes() {
		owed, owedBytes := c.owed, c.owedBytes
		c.mu.Unlock()
		c.log.Warn("iii worker does not read its answers; disconnecting", "owed", owed, "bytes", owedBytes)
		c.stop(wsconn.ClosePolicy, "too many answers waiting: the worker does not read")
		return nil
	}
	c.owed++
	c.owedBytes += size
	c.mu.Unlock()
	c.running.Go(func() {
		_ = c.out.Push(b)
		c.mu.Lock()
		c.owed--
		c.owedBytes -= size
		c.mu.Unlock()
	})
	return nil
}

// queue sends a message the worker is owed, for as long as the connection
// lasts.
func (c *conn) queue(v any) {
	if err := c.send(c.ctx, v); err != nil && c.ctx.Err() == nil {
		c.log.Warn("message to iii worker dropped", "error", err)
	}
}

// handle dispatches one message. Answers and liveness are handled here;
// everything whose order matters goes to the registrar.
func (c *conn) handle(op byte, b []byte) {
	if op == wsconn.OpBinary && c.srv.telemetryFrame(b) {
		return
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return
	}
	// A result read by decodeCall is handled from the stack; any other
	// message is kept on the heap, as the registrar may hold it.
	var d inbound
	decoded := decodeCall(b, &d)
	if decoded && d.Type == typeInvocationResult {
		c.result(&d)
		return
	}
	m := new(inbound)
	if decoded {
		*m = d
	} else if err := json.Unmarshal(b, m); err != nil {
		c.undecodable(b, err)
		return
	}
	size := int64(len(b))
	switch m.Type {
	case typeInvocationResult:
		c.result(m)
	case typeTriggerRegistrationResult:
		c.mu.Lock()
		req, ok := c.configs[m.ID]
		delete(c.configs, m.ID)
		c.mu.Unlock()
		if ok {
			c.sess.Ack(req, m.Error.toError())
		}
	case typePing:
		_ = c.answer(bare{Type: typePong})
	case typePong:
	case typeReattach:
		if c.sess.Evict(m.PreviousWorkerID, m.ReattachToken) {
			c.log.Info("iii worker reattached; previous session closed", "previous_worker_id", m.PreviousWorkerID)
		}
	case typeInvokeFunction:
		if m.FunctionID == engine.FnWorkersRegister {
			// Never held: it is what releases the held messages.
			c.invoke(m)
			return
		}
		c.enqueue(m, size)
	case typeRegisterFunction, typeUnregisterFunction, typeRegisterTriggerType, typeUnregisterTriggerType,
		typeRegisterTrigger, typeUnregisterTrigger, typeRegisterService:
		c.enqueue(m, size)
	default:
		c.log.Debug("unknown iii message type; ignored", "type", m.Type)
	}
}

// result delivers an invocationresult.
func (c *conn) result(m *inbound) {
	if m.InvocationID == nil {
		c.log.Debug("invocationresult without invocation_id; dropped")
		return
	}
	result := m.Result
	if m.Error == nil && len(result) == 0 {
		result = json.RawMessage("null")
	}
	c.sess.Result(*m.InvocationID, result, m.Error.toError())
}

// enqueue hands m to the registrar. A worker that gets too far ahead of it
// is disconnected (1008).
func (c *conn) enqueue(m *inbound, size int64) {
	c.mu.Lock()
	if c.queuedBytes+size > c.maxQueuedBytes() {
		c.mu.Unlock()
		c.log.Warn("iii worker has too many messages waiting to be applied; disconnecting", "bytes", c.queuedBytes)
		c.stop(wsconn.ClosePolicy, "too many messages waiting to be applied")
		return
	}
	c.work = append(c.work, queued{m, size})
	c.queuedBytes += size
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// next takes the registrar's next message, or nil.
func (c *conn) next() *inbound {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.work) == 0 {
		return nil
	}
	q := c.work[0]
	c.work[0] = queued{}
	c.work = c.work[1:]
	c.queuedBytes -= q.size
	return q.m
}

func (c *conn) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.work)
}

// undecodable answers a message whose fields have the wrong types, when it
// names what to answer; JSON that does not parse cannot be answered.
func (c *conn) undecodable(b []byte, err error) {
	var env envelope
	if json.Unmarshal(b, &env) != nil {
		c.log.Warn("iii worker sent a message that is not a JSON object; dropped", "error", err)
		return
	}
	str := func(v any) string { s, _ := v.(string); return s }
	bad := &errorBody{Code: toIII(codes.InvalidArgument), Message: "malformed " + str(env.Type) + " message: " + err.Error()}
	id := str(env.ID)
	switch env.Type {
	case typeInvokeFunction:
		if inv := str(env.InvocationID); inv != "" {
			_ = c.answer(invocationResult{Type: typeInvocationResult, InvocationID: inv, FunctionID: str(env.FunctionID), Error: bad})
			return
		}
	case typeRegisterTrigger:
		if id != "" {
			_ = c.answer(triggerRegistrationResult{Type: typeTriggerRegistrationResult, ID: id,
				TriggerType: str(env.TriggerType), FunctionID: str(env.FunctionID), Error: bad})
			return
		}
	}
	c.log.Warn("iii worker sent a malformed message; dropped", "type", str(env.Type), "error", err)
}

// Described is called when the worker has described itself: held
// registrations are applied now.
func (c *conn) Described(engine.WorkerInfo) {
	c.resolve.Do(func() { close(c.resolved) })
}

// registrar applies registrations and starts invocations in arrival order.
// Until the worker has described itself (or NamespaceGrace has passed, or
// maxHeld messages wait) they are held, so that they take effect under its
// final name and namespace, as iii does.
func (c *conn) registrar() {
	wait := (<-chan struct{})(c.resolved)
	grace := time.NewTimer(c.srv.cfg.NamespaceGrace)
	defer grace.Stop()
	graceC := grace.C
	for {
		if wait == nil {
			for m := c.next(); m != nil; m = c.next() {
				c.apply(m)
				if c.ctx.Err() != nil {
					return
				}
			}
		}
		select {
		case <-c.wake:
			if wait != nil && c.waiting() >= maxHeld {
				wait, graceC = nil, nil
			}
		case <-wait:
			wait, graceC = nil, nil
		case <-graceC:
			c.log.Debug("iii worker did not call engine::workers::register in time; applying its registrations")
			wait, graceC = nil, nil
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *conn) apply(m *inbound) {
	switch m.Type {
	case typeRegisterFunction:
		var viaHTTP *httpinvoke.Function
		if len(m.Invocation) > 0 && string(m.Invocation) != "null" {
			if c.srv.cfg.HTTPInvoker == nil || c.sess.Grant() != nil {
				c.reject(m.ID, engine.Errorf(codes.InvalidArgument,
					"function %q: HTTP-invoked functions (invocation) are off on this listener (they are for trusted listeners, without a policy); serve it from the worker", m.ID))
				return
			}
			f, err := c.srv.cfg.HTTPInvoker.Parse(m.Invocation)
			if err != nil {
				c.reject(m.ID, engine.Errorf(codes.InvalidArgument, "function %q: %s", m.ID, engine.AsError(err).Message))
				return
			}
			viaHTTP = f
		}
		c.mu.Lock()
		if viaHTTP != nil {
			c.viaHTTP[m.ID] = viaHTTP
		} else {
			delete(c.viaHTTP, m.ID)
		}
		c.mu.Unlock()
		if err := c.sess.RegisterFunctionSpec(m.ID, engine.FunctionSpec{Description: m.Description, Metadata: nonNull(m.Metadata),
			RequestFormat: nonNull(m.RequestFormat), ResponseFormat: nonNull(m.ResponseFormat), NoValidation: m.Validate != nil && !*m.Validate}); err != nil {
			c.reject(m.ID, err)
		}
	case typeUnregisterFunction:
		c.mu.Lock()
		delete(c.viaHTTP, m.ID)
		c.mu.Unlock()
		if err := c.sess.UnregisterFunction(m.ID); err != nil {
			c.log.Info("unregisterfunction refused", engine.LogFunctionID, m.ID, "error", err)
		}
	case typeRegisterTriggerType:
		if err := c.sess.RegisterTriggerType(m.ID, m.Description); err != nil {
			c.log.Warn("registertriggertype refused", "trigger_type", m.ID, "error", err)
			c.queue(triggerRegistrationResult{Type: typeTriggerRegistrationResult, ID: m.ID, TriggerType: m.ID, Error: toBody(err)})
		}
	case typeUnregisterTriggerType:
		if err := c.sess.UnregisterTriggerType(m.ID); err != nil {
			c.log.Info("unregistertriggertype refused", "trigger_type", m.ID, "error", err)
		}
	case typeRegisterTrigger:
		t := engine.Trigger{ID: m.ID, Type: m.TriggerType, FunctionID: m.FunctionID, Config: m.Config, Metadata: nonNull(m.Metadata)}
		if err := c.sess.RegisterTrigger(c.ctx, t); err != nil {
			c.log.Info("registertrigger refused", engine.LogTriggerID, m.ID, "error", err)
			c.queue(triggerRegistrationResult{Type: typeTriggerRegistrationResult, ID: m.ID, TriggerType: m.TriggerType,
				FunctionID: m.FunctionID, Error: toBody(err)})
		}
	case typeUnregisterTrigger:
		if err := c.sess.UnregisterTrigger(c.ctx, m.ID); err != nil {
			c.log.Info("unregistertrigger refused", engine.LogTriggerID, m.ID, "error", err)
		}
	case typeRegisterService:
		// Grouping for iii's console only; nothing to do.
	case typeInvokeFunction:
		c.invoke(m)
	}
}

// reject tells the worker a function registration failed.
func (c *conn) reject(functionID string, err error) {
	c.log.Info("registerfunction refused", engine.LogFunctionID, functionID, "error", err)
	c.queue(registrationRejected{Type: typeRegistrationRejected, Code: rejectionCode(err), Namespace: c.sess.Info().Namespace,
		FunctionID: functionID, Message: engine.AsError(err).Message})
}

// callOf is the call m asks for. (It is made where it is used: a Call
// held by a call's goroutine would be one more allocation per call.)
func callOf(m *inbound) engine.Call {
	return engine.Call{FunctionID: m.FunctionID, Payload: m.Data, Metadata: nonNull(m.Metadata), Traceparent: m.Traceparent, Baggage: m.Baggage}
}

// invoke runs the worker's own call and answers it when it has an id.
func (c *conn) invoke(m *inbound) {
	var id string
	if m.InvocationID != nil {
		id = *m.InvocationID
	}
	if m.Namespace != nil && strings.TrimSpace(*m.Namespace) == "" {
		c.answerCall(id, m.FunctionID, nil, engine.Errorf("INVALID_NAMESPACE", "namespace must not be blank"))
		return
	}
	void := false
	if a := m.Action; a != nil {
		switch a.Type {
		case "void":
			void = true
		case "enqueue":
			if a.Queue == "" {
				c.answerCall(id, m.FunctionID, nil, engine.Errorf(codes.EnqueueError, "the enqueue action names no queue"))
				return
			}
			c.running.Go(func() {
				out, err := c.sess.Enqueue(c.ctx, a.Queue, callOf(m))
				c.answerCall(id, m.FunctionID, out, err)
			})
			return
		default:
			c.answerCall(id, m.FunctionID, nil, engine.Errorf(codes.InvalidArgument, "unknown action type %q", a.Type))
			return
		}
	}
	if void || id == "" {
		if err := c.sess.CallVoid(callOf(m)); err != nil {
			c.log.Debug("void call refused", engine.LogFunctionID, m.FunctionID, "error", err)
		}
		return
	}
	c.mu.Lock()
	if c.inflight >= c.maxInflight() {
		c.mu.Unlock()
		c.answerCall(id, m.FunctionID, nil, engine.Errorf(codes.Overloaded, "this worker has %d calls running, the limit is %d", c.maxInflight(), c.maxInflight()))
		return
	}
	c.inflight++
	c.mu.Unlock()
	c.goCall(func() {
		out, err := c.sess.Call(c.ctx, callOf(m))
		c.reply(id, m.FunctionID, out, err)
		c.mu.Lock()
		c.inflight--
		c.mu.Unlock()
	})
}

// answerCall answers the worker's call id with out or err; a call without
// an id gets no answer, and its failure is only logged. (A method, not a
// closure in invoke: that one was an allocation per call.)
func (c *conn) answerCall(id, functionID string, out []byte, err error) {
	if id != "" {
		c.reply(id, functionID, out, err)
	} else if err != nil {
		c.log.Debug("call without invocation_id failed", engine.LogFunctionID, functionID, "error", err)
	}
}

// maxIdleCallers bounds the goroutines a connection keeps for its next
// calls.
const maxIdleCallers = 64

// goCall runs one of the worker's calls on a goroutine of the connection:
// an idle one kept from an earlier call when there is one, whose stack has
// already grown to what a call takes, else a new one, kept afterwards
// while fewer than maxIdleCallers are idle. (A new goroutine per call
// spent about a seventh of the engine's CPU at 64 calls in flight growing
// and copying its stack.)
func (c *conn) goCall(f func()) {
	select {
	case c.calls <- f:
		return
	default:
	}
	c.running.Go(func() {
		for {
			f()
			if c.idleCallers.Add(1) > maxIdleCallers {
				c.idleCallers.Add(-1)
				return
			}
			select {
			case f = <-c.calls:
				c.idleCallers.Add(-1)
			case <-c.ctx.Done():
				c.idleCallers.Add(-1)
				return
			}
		}
	})
}

// maxInflight bounds the calls one worker may have running at once.
func (c *conn) maxInflight() int { return 4 * c.srv.cfg.SendQueue }

func (c *conn) reply(id, functionID string, out []byte, err error) {
	r := invocationResult{Type: typeInvocationResult, InvocationID: id, FunctionID: functionID, Error: toBody(err)}
	if err == nil && !isNull(out) {
		// A null result is left out, as iii does: its SDKs resolve it
		// as undefined.
		r.Result = out
	}
	if serr := c.answerFrame(c.frame(r.appendJSON(newFrame(r.size())))); errors.Is(serr, engine.ErrMessageTooLarge) {
		r.Result, r.Error = nil, toBody(engine.Errorf(codes.MessageTooLarge, "result of %q: %s", functionID, engine.AsError(serr).Message))
		_ = c.answerFrame(c.frame(r.appendJSON(newFrame(r.size()))))
	}
}

// Invoke sends an invocation to the worker. A void invocation carries an
// id too (iii SDKs expect one); its answer is dropped.
func (c *conn) Invoke(ctx context.Context, inv engine.Invocation) error {
	c.mu.Lock()
	f := c.viaHTTP[inv.FunctionID]
	if f != nil {
		// One goroutine per call, so a bound: a flood of calls to a slow
		// URL costs bounded goroutines and memory.
		if limit := c.srv.cfg.HTTPInvoker.MaxInFlight(); c.httpRunning >= limit {
			c.mu.Unlock()
			return engine.Errorf(codes.Overloaded, "%s is HTTP-invoked and has %d calls running, the limit is %d (--http-invoke-max-in-flight)", inv.FunctionID, limit, limit)
		}
		c.httpRunning++
		c.mu.Unlock()
		inv := inv // only this copy goes to the heap
		c.running.Go(func() { c.invokeHTTP(f, inv) })
		return nil
	}
	c.mu.Unlock()
	m := invokeFunction{Type: typeInvokeFunction, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID,
		Data: orNull(inv.Payload), Traceparent: inv.Traceparent, Baggage: inv.Baggage, Metadata: inv.Metadata}
	b, err := c.frame(m.appendJSON(newFrame(m.size())))
	if err != nil {
		return err
	}
	return c.sendFrame(ctx, b)
}

// invokeHTTP calls an HTTP-invoked function and answers the invocation
// with its result; the call ends with the connection or the deadline.
func (c *conn) invokeHTTP(f *httpinvoke.Function, inv engine.Invocation) {
	ctx, cancel := context.WithDeadline(c.ctx, inv.Deadline)
	defer cancel()
	out, err := c.srv.cfg.HTTPInvoker.Call(ctx, f, inv.FunctionID, inv.InvocationID, inv.Payload)
	c.mu.Lock()
	c.httpRunning-- // before the result, so that its caller finds the slot free
	c.mu.Unlock()
	if err != nil {
		c.log.Debug("HTTP-invoked function failed", engine.LogFunctionID, inv.FunctionID, "error", err)
	}
	if !inv.Void {
		var e *engine.Error
		if err != nil {
			e = engine.AsError(err)
		}
		c.sess.Result(inv.InvocationID, out, e)
	}
}

// Cancel has no message in iii's protocol: the worker's handler runs on
// and its late answer is dropped.
func (c *conn) Cancel(string) {}

// ConfigureTrigger forwards a trigger to the worker that provides its type.
// The worker answers a registertrigger with triggerregistrationresult; an
// unregistertrigger has no answer.
func (c *conn) ConfigureTrigger(ctx context.Context, requestID string, t engine.Trigger, remove bool) error {
	if remove {
		if err := c.send(ctx, unregisterTrigger{Type: typeUnregisterTrigger, ID: t.ID, TriggerType: t.Type}); err != nil {
			return err
		}
		c.sess.Ack(requestID, nil)
		return nil
	}
	c.mu.Lock()
	c.configs[t.ID] = requestID
	c.mu.Unlock()
	return c.send(ctx, registerTrigger{Type: typeRegisterTrigger, ID: t.ID, TriggerType: t.Type, FunctionID: t.FunctionID,
		Config: orNull(t.Config), Metadata: t.Metadata})
}

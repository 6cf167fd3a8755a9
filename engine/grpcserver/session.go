package grpcserver

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/workpool"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

type connectStream = grpc.BidiStreamingServer[trinev1.ConnectRequest, trinev1.ConnectResponse]

// Connect serves one worker session.
func (s *Server) Connect(stream connectStream) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := s.checkSize(first); err != nil {
		return toStatus(err)
	}
	hello := first.GetHello()
	if hello == nil {
		return toStatus(engine.Errorf(codes.InvalidArgument, "the first frame of a session must be hello"))
	}
	info := engine.WorkerInfo{
		Name: hello.GetName(), Namespace: hello.GetNamespace(), Runtime: hello.GetRuntime(), Version: hello.GetVersion(),
		PreviousID: hello.GetPreviousWorkerId(), ReattachToken: hello.GetReattachToken(), Transport: "grpc",
	}
	if p, ok := peer.FromContext(stream.Context()); ok {
		info.Addr = p.Addr.String()
	}
	in := AuthInput(stream.Context())
	info.Identity = in.Identity
	grant, err := s.authenticate(stream.Context(), in)
	if err != nil {
		return toStatus(err)
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	c := &conn{srv: s, out: make(chan outFrame, s.cfg.SendQueue), ctx: ctx, cancel: cancel, calls: make(map[string]context.CancelFunc),
		pool: workpool.New(keptWorkers, s.cfg.WorkerIdle)}
	sess, err := s.e.AttachGranted(info, c, grant)
	if err != nil {
		return toStatus(err)
	}
	c.sess, c.stream = sess, stream
	log := s.log.With(engine.LogWorkerID, sess.ID(), engine.LogWorkerName, info.Name)
	defer func() {
		sess.Close()
		cancel(nil)
		c.pool.Close() // no new work from the reader from now on
		c.wg.Wait()
	}()
	if err := stream.Send(&trinev1.ConnectResponse{Frame: &trinev1.ConnectResponse_Welcome{Welcome: &trinev1.Welcome{
		WorkerId: sess.ID(), ReattachToken: sess.ReattachToken(), MaxMessageBytes: int64(s.cfg.MaxMessageBytes),
	}}}); err != nil {
		return err
	}

	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		cancel(c.write())
	}()
	// The reader dispatches frames itself (dispatch never blocks on other
	// workers), saving a goroutine hand-off per frame. It ends when Recv
	// fails, at the latest when this handler returns.
	recvErr := make(chan error, 1)
	go func() {
		for {
			f, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if err := s.checkSize(f); err != nil {
				c.refuse(f, err)
				continue
			}
			c.dispatch(f)
		}
	}()
	select {
	case err := <-recvErr:
		if errors.Is(err, io.EOF) || status.Code(err) == grpccodes.Canceled {
			log.Debug("worker closed its stream")
			return nil
		}
		log.Info("worker stream failed", "error", err)
		return err
	case <-sess.Done():
		return status.Error(grpccodes.Unavailable, "session closed by the engine (shutdown or reattached elsewhere)")
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// conn is the engine.Peer of one Connect stream.
type conn struct {
	srv    *Server
	sess   *engine.Session
	stream connectStream
	out    chan outFrame
	// queued counts the frames put in out and not yet sent: while it is
	// not 0, a frame may not overtake them (sendDirect).
	queued atomic.Int64
	// sendMu is held by whoever hands a frame to the stream: the writer,
	// or a sender that found it idle (sendDirect).
	sendMu sync.Mutex
	// outBytes is the size of the frames in out, at most 16 ×
	// MaxMessageBytes: a worker that does not read holds that much.
	outBytes atomic.Int64
	ctx      context.Context // ends with the stream
	cancel   context.CancelCauseFunc
	wg       sync.WaitGroup // the writer
	pool     *workpool.Pool // calls and waiting registrations; closed as the handler returns

	mu        sync.Mutex
	calls     map[string]context.CancelFunc // the worker's own calls in flight, by call id
	owed      int                           // results waiting for room in out
	owedBytes int
}

var _ engine.Peer = (*conn)(nil)

func (c *conn) write() error {
	for {
		select {
		case o := <-c.out:
			c.outBytes.Add(-int64(o.size))
			c.sendMu.Lock()
			err := c.stream.Send(o.f)
			c.queued.Add(-1)
			c.sendMu.Unlock()
			if err != nil {
				return err
			}
		case <-c.ctx.Done():
			return nil
		}
	}
}

// sendDirect sends f on the stream from the calling goroutine, saving the
// hand-off to the writer, if nothing is queued before it and no one is
// sending; it reports whether it did. It is for frames whose sender may
// wait as long as the worker makes the stream wait: a result, sent by the
// call's goroutine as its last act (a worker that does not read its
// results is bounded by owe all the same: the results queued behind this
// one count). A send that fails ends the stream.
func (c *conn) sendDirect(f *trinev1.ConnectResponse) bool {
	if c.queued.Load() != 0 || !c.sendMu.TryLock() {
		return false
	}
	defer c.sendMu.Unlock()
	if c.queued.Load() != 0 || c.ctx.Err() != nil {
		return false
	}
	if err := c.stream.Send(f); err != nil {
		c.cancel(err)
	}
	return true
}

// enqueue puts o in out, counting it as queued: at once if there is
// room, else, with wait set, when room comes unless wait1 or wait2 ends
// first (a nil channel never does). It reports whether it did.
func (c *conn) enqueue(o outFrame, wait bool, wait1, wait2 <-chan struct{}) bool {
	c.queued.Add(1)
	select {
	case c.out <- o:
		return true
	default:
	}
	if wait {
		select {
		case c.out <- o:
			return true
		case <-wait1:
		case <-wait2:
		}
	}
	c.queued.Add(-1)
	return false
}

// outFrame is a queued frame and its encoded size.
type outFrame struct {
	f    *trinev1.ConnectResponse
	size int
}

// maxOutBytes bounds the bytes queued for one worker (out) and, apart,
// the results it is owed beyond that.
func (c *conn) maxOutBytes() int { return 16 * c.srv.cfg.MaxMessageBytes }

// push puts o in out if there is room, in messages and bytes, now.
func (c *conn) push(o outFrame) bool {
	if int(c.outBytes.Load())+o.size > c.maxOutBytes() {
		return false
	}
	c.outBytes.Add(int64(o.size))
	if c.enqueue(o, false, nil, nil) {
		return true
	}
	c.outBytes.Add(-int64(o.size))
	return false
}

// send queues a frame, waiting for room until ctx or the stream ends. A
// queue full in bytes fails at once with overloaded.
func (c *conn) send(ctx context.Context, f *trinev1.ConnectResponse) error {
	return c.sendSized(ctx, outFrame{f, proto.Size(f)})
}

func (c *conn) sendSized(ctx context.Context, o outFrame) error {
	if c.push(o) {
		return nil
	}
	if int(c.outBytes.Load())+o.size > c.maxOutBytes() {
		return engine.Errorf(codes.Overloaded, "worker %s is not reading its stream: %d bytes queued", c.sess.ID(), c.outBytes.Load())
	}
	c.outBytes.Add(int64(o.size))
	if c.enqueue(o, true, ctx.Done(), c.ctx.Done()) {
		return nil
	}
	c.outBytes.Add(-int64(o.size))
	if c.ctx.Err() != nil {
		return engine.Errorf(codes.WorkerDisconnected, "worker %s disconnected", c.sess.ID())
	}
	return engine.Errorf(codes.Overloaded, "worker %s is not reading its stream", c.sess.ID())
}

func (c *conn) sendFrame(f *trinev1.ConnectResponse) { _ = c.send(c.ctx, f) }

func (c *conn) Invoke(ctx context.Context, inv engine.Invocation) error {
	frame := &trinev1.Invoke{
		InvocationId: inv.InvocationID, FunctionId: inv.FunctionID, Payload: inv.Payload,
		Void: inv.Void, Metadata: inv.Metadata, Traceparent: inv.Traceparent, Baggage: inv.Baggage,
	}
	if !inv.Deadline.IsZero() {
		frame.TimeoutMs = max(1, time.Until(inv.Deadline).Milliseconds())
	}
	f := &trinev1.ConnectResponse{Frame: &trinev1.ConnectResponse_Invoke{Invoke: frame}}
	n := proto.Size(f)
	if n > c.srv.cfg.MaxMessageBytes {
		return engine.Errorf(codes.MessageTooLarge, "invocation of %q is %d bytes, the limit is %d", inv.FunctionID, n, c.srv.cfg.MaxMessageBytes)
	}
	return c.sendSized(ctx, outFrame{f, n})
}

func (c *conn) Cancel(invocationID string) {
	f := &trinev1.ConnectResponse{Frame: &trinev1.ConnectResponse_Cancel{Cancel: &trinev1.Cancel{Id: invocationID}}}
	c.push(outFrame{f, proto.Size(f)}) // best effort: the invocation's timeout_ms also bounds the handler
}

func (c *conn) ConfigureTrigger(ctx context.Context, requestID string, t engine.Trigger, remove bool) error {
	return c.send(ctx, &trinev1.ConnectResponse{Frame: &trinev1.ConnectResponse_TriggerConfig{TriggerConfig: &trinev1.TriggerConfig{
		RequestId: requestID, Trigger: triggerToProto(t), Remove: remove,
	}}})
}

func (c *conn) ack(requestID string, err error) {
	c.sendFrame(&trinev1.ConnectResponse{Frame: &trinev1.ConnectResponse_Ack{Ack: &trinev1.Ack{RequestId: requestID, Error: toProto(err)}}})
}

// keptWorkers bounds the idle goroutines a session keeps for its next
// calls; calls beyond them run on goroutines of their own.
const keptWorkers = 128

// async runs f on a goroutine of the session's pool, which the handler
// waits for; once the handler is returning, f does not run.
func (c *conn) async(f func()) { c.pool.Go(f) }

// dispatch handles one worker frame. It never blocks on other workers:
// anything that may wait runs on its own goroutine.
func (c *conn) dispatch(f *trinev1.ConnectRequest) {
	sess := c.sess
	switch f := f.GetFrame().(type) {
	case *trinev1.ConnectRequest_InvokeResult:
		r := f.InvokeResult
		sess.Result(r.GetInvocationId(), r.GetResult(), fromProto(r.GetError()))
	case *trinev1.ConnectRequest_Call:
		c.call(f.Call)
	case *trinev1.ConnectRequest_Cancel:
		c.mu.Lock()
		cancel := c.calls[f.Cancel.GetId()]
		c.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	case *trinev1.ConnectRequest_Ack:
		sess.Ack(f.Ack.GetRequestId(), fromProto(f.Ack.GetError()))
	case *trinev1.ConnectRequest_RegisterFunction:
		r := f.RegisterFunction
		c.ack(r.GetRequestId(), sess.RegisterFunctionSpec(r.GetId(), engine.FunctionSpec{Description: r.GetDescription(), Metadata: r.GetMetadata(),
			RequestFormat: r.GetRequestFormat(), ResponseFormat: r.GetResponseFormat(), NoValidation: r.Validate != nil && !r.GetValidate()}))
	case *trinev1.ConnectRequest_UnregisterFunction:
		r := f.UnregisterFunction
		c.ack(r.GetRequestId(), sess.UnregisterFunction(r.GetId()))
	case *trinev1.ConnectRequest_RegisterTriggerType:
		r := f.RegisterTriggerType
		c.ack(r.GetRequestId(), sess.RegisterTriggerType(r.GetId(), r.GetDescription()))
	case *trinev1.ConnectRequest_UnregisterTriggerType:
		r := f.UnregisterTriggerType
		c.ack(r.GetRequestId(), sess.UnregisterTriggerType(r.GetId()))
	case *trinev1.ConnectRequest_RegisterTrigger:
		r := f.RegisterTrigger
		c.async(func() { c.ack(r.GetRequestId(), sess.RegisterTrigger(c.ctx, triggerFromProto(r.GetTrigger()))) })
	case *trinev1.ConnectRequest_UnregisterTrigger:
		r := f.UnregisterTrigger
		c.async(func() { c.ack(r.GetRequestId(), sess.UnregisterTrigger(c.ctx, r.GetId())) })
	case *trinev1.ConnectRequest_Hello:
		c.srv.log.Warn("hello sent twice; ignored", engine.LogWorkerID, sess.ID())
	default:
		c.srv.log.Warn("unknown frame; ignored", engine.LogWorkerID, sess.ID())
	}
}

// call runs the worker's own trigger and sends back its result.
func (c *conn) call(r *trinev1.Call) {
	call := engine.Call{
		FunctionID: r.GetFunctionId(), Payload: r.GetPayload(), Metadata: r.GetMetadata(),
		Traceparent: r.GetTraceparent(), Baggage: r.GetBaggage(), Timeout: time.Duration(r.GetTimeoutMs()) * time.Millisecond,
	}
	if r.GetAction() == trinev1.Action_ACTION_VOID {
		if err := c.sess.CallVoid(call); err != nil {
			c.srv.log.Debug("void call refused", engine.LogFunctionID, call.FunctionID, "error", err)
		}
		return
	}
	id := r.GetCallId()
	ctx, cancel := context.WithCancel(c.ctx)
	c.mu.Lock()
	if len(c.calls) >= c.maxCalls() {
		c.mu.Unlock()
		cancel()
		c.refuseCall(id, engine.Errorf(codes.Overloaded, "this worker has %d calls running, the limit is %d", c.maxCalls(), c.maxCalls()))
		return
	}
	c.calls[id] = cancel
	c.mu.Unlock()
	c.async(func() {
		defer func() {
			c.mu.Lock()
			delete(c.calls, id)
			c.mu.Unlock()
			cancel()
		}()
		out, err := c.sess.Call(ctx, call)
		res := &trinev1.CallResult{CallId: id, Result: out, Error: toProto(err)}
		f := &trinev1.ConnectResponse{Frame: &trinev1.ConnectResponse_CallResult{CallResult: res}}
		if n := proto.Size(f); n > c.srv.cfg.MaxMessageBytes {
			res.Result, res.Error = nil, toProto(engine.Errorf(codes.MessageTooLarge,
				"result of %q is %d bytes, the limit is %d", call.FunctionID, n, c.srv.cfg.MaxMessageBytes))
		}
		c.answer(f)
	})
}

// refuseCall answers the worker's call id with err, from the reader: no
// goroutine unless the answer has to wait, and then only as one of the
// bounded owed ones.
func (c *conn) refuseCall(id string, err error) {
	res := &trinev1.CallResult{CallId: id, Error: toProto(err)}
	o := outFrame{&trinev1.ConnectResponse{Frame: &trinev1.ConnectResponse_CallResult{CallResult: res}}, 0}
	o.size = proto.Size(o.f)
	if !c.push(o) && c.owe(o) {
		c.async(func() { c.deliverOwed(o) })
	}
}

// refuse answers a frame the engine will not take (one over
// MaxMessageBytes) with err, as dispatch would answer its failure: a call
// gets its result, a registration its ack, an invocation's result fails
// its caller. The session goes on.
func (c *conn) refuse(f *trinev1.ConnectRequest, err error) {
	switch fr := f.GetFrame().(type) {
	case *trinev1.ConnectRequest_InvokeResult:
		c.sess.Result(fr.InvokeResult.GetInvocationId(), nil, engine.AsError(err))
	case *trinev1.ConnectRequest_Call:
		if fr.Call.GetAction() != trinev1.Action_ACTION_VOID {
			c.refuseCall(fr.Call.GetCallId(), err)
		}
	case *trinev1.ConnectRequest_Ack:
		c.sess.Ack(fr.Ack.GetRequestId(), engine.AsError(err))
	default: // a registration: its ack
		if r, ok := frameOf(f).(interface{ GetRequestId() string }); ok {
			c.ack(r.GetRequestId(), err)
		}
	}
	c.srv.log.Info("worker frame refused", engine.LogWorkerID, c.sess.ID(), "error", err)
}

// frameOf is the message a ConnectRequest's frame holds, or nil.
func frameOf(f *trinev1.ConnectRequest) proto.Message {
	m := f.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("frame"))
	if fd == nil || fd.Message() == nil {
		return nil
	}
	return m.Get(fd).Message().Interface()
}

// maxCalls bounds the calls one worker may have running at once.
func (c *conn) maxCalls() int { return 4 * c.srv.cfg.SendQueue }

// answer queues a result the worker is owed. When the send queue is full
// the worker is not reading: it may be owed at most SendQueue results and
// 16 × MaxMessageBytes waiting for room, beyond which its stream is ended
// (RESOURCE_EXHAUSTED), so that a peer that floods calls and never reads
// costs bounded memory.
func (c *conn) answer(f *trinev1.ConnectResponse) {
	if c.sendDirect(f) {
		return
	}
	o := outFrame{f, proto.Size(f)}
	if !c.push(o) && c.owe(o) {
		c.deliverOwed(o)
	}
}

// owe counts o as owed, or, past the bounds, ends the stream; it reports
// whether o is owed (and must be delivered with deliverOwed).
func (c *conn) owe(o outFrame) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owed+1 > c.srv.cfg.SendQueue || c.owedBytes+o.size > c.maxOutBytes() {
		c.srv.log.Warn("worker does not read its results; ending its stream", engine.LogWorkerID, c.sess.ID())
		c.cancel(status.Error(grpccodes.ResourceExhausted, "too many results waiting: the worker does not read its stream"))
		return false
	}
	c.owed++
	c.owedBytes += o.size
	return true
}

// deliverOwed waits for room for an owed o, or for the end of the stream.
func (c *conn) deliverOwed(o outFrame) {
	c.outBytes.Add(int64(o.size))
	if !c.enqueue(o, true, c.ctx.Done(), nil) {
		c.outBytes.Add(-int64(o.size))
	}
	c.mu.Lock()
	c.owed--
	c.owedBytes -= o.size
	c.mu.Unlock()
}

func triggerToProto(t engine.Trigger) *trinev1.Trigger {
	return &trinev1.Trigger{Id: t.ID, Type: t.Type, FunctionId: t.FunctionID, Config: t.Config, Metadata: t.Metadata}
}

func triggerFromProto(t *trinev1.Trigger) engine.Trigger {
	return engine.Trigger{ID: t.GetId(), Type: t.GetType(), FunctionID: t.GetFunctionId(), Config: t.GetConfig(), Metadata: t.GetMetadata()}
}

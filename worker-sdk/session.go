package trine

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// sendQueue is the length of a session's outbound frame queue.
const sendQueue = 1024

type connectStream = grpc.BidiStreamingClient[trinev1.ConnectRequest, trinev1.ConnectResponse]

type reply struct {
	value json.RawMessage
	err   error
}

// session is one Connect stream. It ends when the stream breaks or the
// worker closes, and all its goroutines end with it.
type session struct {
	w        *Worker
	workerID string
	maxBytes int
	out      chan *trinev1.ConnectRequest
	ctx      context.Context
	wg       sync.WaitGroup
	stream   connectStream
	// queued counts the frames put in out and not yet sent: while it is
	// not 0, a frame may not overtake them (send's direct path).
	queued atomic.Int64
	// sendMu is held by whoever hands a frame to the stream: the writer,
	// or a sender that found it idle. halfClosed is set under it once
	// the writer has closed the sending side.
	sendMu     sync.Mutex
	halfClosed bool

	mu      sync.Mutex
	waiting map[string]chan reply         // acks and call results, by request or call id
	running map[string]context.CancelFunc // invocations being served, by invocation id
	dead    bool
}

// runSession opens a stream on cc, says hello, replays the registrations and
// serves the stream until it breaks. It returns the worker id and reattach
// token it was given, if it got that far.
func (w *Worker) runSession(cc *grpc.ClientConn, prevID, token string) (string, string, error) {
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	stream, err := trinev1.NewEngineServiceClient(cc).Connect(ctx)
	if err != nil {
		return "", "", err
	}
	hello := &trinev1.Hello{Name: w.opts.name, Namespace: w.opts.namespace, Runtime: Runtime, Version: w.opts.version,
		PreviousWorkerId: prevID, ReattachToken: token}
	if err := stream.Send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Hello{Hello: hello}}); err != nil {
		return "", "", err
	}
	first, err := stream.Recv()
	if err != nil {
		return "", "", err
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return "", "", errorf(CodeInternal, "engine did not answer hello with welcome")
	}
	s := &session{
		w: w, workerID: welcome.GetWorkerId(), maxBytes: int(welcome.GetMaxMessageBytes()),
		out: make(chan *trinev1.ConnectRequest, sendQueue), ctx: ctx, stream: stream,
		waiting: make(map[string]chan reply), running: make(map[string]context.CancelFunc),
	}
	if s.maxBytes <= 0 {
		s.maxBytes = 4 << 20
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if !s.write() {
			cancel()
		}
	}()
	defer func() {
		cancel()
		s.fail()
		w.setSessionIf(s)
		s.wg.Wait()
	}()
	s.replay()
	w.setSession(s)
	w.log.Info("connected to engine", "worker_id", s.workerID)
	for {
		f, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errorf(CodeUnavailable, "engine closed the stream")
			}
			return welcome.GetWorkerId(), welcome.GetReattachToken(), err
		}
		s.dispatch(f)
	}
}

// setSessionIf clears the live session if it is still s.
func (w *Worker) setSessionIf(s *session) {
	w.mu.Lock()
	live := w.sess == s
	w.mu.Unlock()
	if live {
		w.setSession(nil)
	}
}

// write sends queued frames until the stream fails (false) or the worker
// quits (true): then it flushes the queue and half-closes the stream, and
// the engine ends the session once it has read everything.
func (s *session) write() bool {
	for {
		select {
		case f := <-s.out:
			if !s.sendQueued(f) {
				return false
			}
		case <-s.w.quit:
			for {
				select {
				case f := <-s.out:
					if !s.sendQueued(f) {
						return false
					}
				default:
					s.sendMu.Lock()
					defer s.sendMu.Unlock()
					s.halfClosed = true
					return s.stream.CloseSend() == nil
				}
			}
		case <-s.ctx.Done():
			return false
		}
	}
}

// sendQueued sends a frame taken from out.
func (s *session) sendQueued(f *trinev1.ConnectRequest) bool {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.queued.Add(-1)
	return s.stream.Send(f) == nil
}

// sendDirect sends f from the calling goroutine, saving the hand-off to
// the writer, if nothing is queued before it and no one is sending; it
// reports whether it did, and the send's error. The engine reads every
// stream at once (it never waits on a handler to read the next frame), so
// the wait is short.
func (s *session) sendDirect(f *trinev1.ConnectRequest) (bool, error) {
	if s.queued.Load() != 0 || !s.sendMu.TryLock() {
		return false, nil
	}
	defer s.sendMu.Unlock()
	if s.queued.Load() != 0 || s.halfClosed || s.ctx.Err() != nil {
		return false, nil
	}
	if err := s.stream.Send(f); err != nil {
		return true, errorf(CodeUnavailable, "connection to the engine lost")
	}
	return true, nil
}

// fail ends every wait on this session: the stream is gone.
func (s *session) fail() {
	s.mu.Lock()
	s.dead = true
	waiting := s.waiting
	s.waiting = nil
	s.mu.Unlock()
	for _, ch := range waiting {
		ch <- reply{err: errorf(CodeUnavailable, "connection to the engine lost")}
	}
}

// send queues a frame, refusing one over the engine's size limit.
func (s *session) send(ctx context.Context, f *trinev1.ConnectRequest) error {
	if n := proto.Size(f); n > s.maxBytes {
		return errorf(CodeMessageTooLarge, "frame is %d bytes, the engine accepts at most %d", n, s.maxBytes)
	}
	if sent, err := s.sendDirect(f); sent {
		return err
	}
	s.queued.Add(1)
	select {
	case s.out <- f:
		return nil
	case <-ctx.Done():
		s.queued.Add(-1)
		e := asError(ctx.Err())
		return errorf(e.Code, "%s while waiting to send to the engine (its send queue is full)", e.Message)
	case <-s.ctx.Done():
		s.queued.Add(-1)
		return errorf(CodeUnavailable, "connection to the engine lost")
	}
}

// trySend queues f if there is room now, and reports whether it did.
func (s *session) trySend(f *trinev1.ConnectRequest) bool {
	s.queued.Add(1)
	select {
	case s.out <- f:
		return true
	default:
		s.queued.Add(-1)
		return false
	}
}

// expect registers id as awaiting a reply.
func (s *session) expect(id string) (chan reply, error) {
	ch := make(chan reply, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, errorf(CodeUnavailable, "connection to the engine lost")
	}
	s.waiting[id] = ch
	return ch, nil
}

func (s *session) forget(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.waiting[id]
	delete(s.waiting, id)
	return ok
}

func (s *session) resolve(id string, r reply) {
	s.mu.Lock()
	ch, ok := s.waiting[id]
	delete(s.waiting, id)
	s.mu.Unlock()
	if ok {
		ch <- r
	}
}

// frameFunc builds a registration frame carrying the given request id.
type frameFunc func(requestID string) *trinev1.ConnectRequest

// request sends a registration frame and waits for the engine's Ack.
func (s *session) request(ctx context.Context, build frameFunc) error {
	id, ch, err := s.sendRequest(ctx, build)
	if err != nil {
		return err
	}
	return s.awaitAck(ctx, id, ch)
}

func (s *session) sendRequest(ctx context.Context, build frameFunc) (string, chan reply, error) {
	id := s.w.newID()
	ch, err := s.expect(id)
	if err != nil {
		return "", nil, err
	}
	if err := s.send(ctx, build(id)); err != nil {
		s.forget(id)
		return "", nil, err
	}
	return id, ch, nil
}

func (s *session) awaitAck(ctx context.Context, id string, ch chan reply) error {
	select {
	case r := <-ch:
		return r.err
	case <-ctx.Done():
		s.forget(id)
		return errorf(CodeUnavailable, "engine did not acknowledge: %s", asError(ctx.Err()).Message)
	}
}

// dispatch handles one engine frame without blocking on handlers.
func (s *session) dispatch(f *trinev1.ConnectResponse) {
	switch f := f.GetFrame().(type) {
	case *trinev1.ConnectResponse_Ack:
		s.resolve(f.Ack.GetRequestId(), reply{err: fromProto(f.Ack.GetError())})
	case *trinev1.ConnectResponse_CallResult:
		r := f.CallResult
		s.resolve(r.GetCallId(), reply{value: r.GetResult(), err: fromProto(r.GetError())})
	case *trinev1.ConnectResponse_Invoke:
		s.w.serve(s, f.Invoke)
	case *trinev1.ConnectResponse_Cancel:
		s.mu.Lock()
		cancel := s.running[f.Cancel.GetId()]
		s.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	case *trinev1.ConnectResponse_TriggerConfig:
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.w.configureTrigger(s, f.TriggerConfig)
		}()
	}
}

// replay sends every stored registration: trigger types, then functions,
// then triggers. Refusals go to the error handler and drop the registration.
func (s *session) replay() {
	w := s.w
	w.mu.Lock()
	var frames []frameFunc
	var drop []func()
	for id, tt := range w.triggerTypes {
		frames = append(frames, tt.frame)
		drop = append(drop, func() { w.forgetTriggerType(id, tt) })
	}
	for id, fn := range w.functions {
		frames = append(frames, fn.frame)
		drop = append(drop, func() { w.forgetFunction(id, fn) })
	}
	for id, t := range w.triggers {
		frames = append(frames, t.frame)
		drop = append(drop, func() { w.forgetTrigger(id, t) })
	}
	w.mu.Unlock()
	if len(frames) == 0 {
		return
	}
	ids := make([]string, len(frames))
	chans := make([]chan reply, len(frames))
	for i, build := range frames {
		id, ch, err := s.sendRequest(s.ctx, build)
		if err != nil {
			return
		}
		ids[i], chans[i] = id, ch
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for i, ch := range chans {
			if err := s.awaitAck(s.ctx, ids[i], ch); err != nil && refused(err) {
				drop[i]()
				w.reportError(err)
			}
		}
	}()
}

// refused tells a definitive refusal from a lost connection.
func refused(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code != CodeUnavailable && e.Code != CodeDeadlineExceeded && e.Code != CodeCancelled
}

func (w *Worker) reportError(err error) {
	w.log.Error("registration refused by the engine", "error", err)
	if w.opts.onError != nil {
		w.opts.onError(err)
	}
}

func fromProto(e *trinev1.Error) error {
	if e == nil {
		return nil
	}
	code := Code(e.GetCode())
	if code == "" {
		code = CodeInternal
	}
	return &Error{Code: code, Message: e.GetMessage(), Stacktrace: e.GetStacktrace()}
}

func toProto(err error) *trinev1.Error {
	if err == nil {
		return nil
	}
	e := asError(err)
	return &trinev1.Error{Code: string(e.Code), Message: e.Message, Stacktrace: e.Stacktrace}
}

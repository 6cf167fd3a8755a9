package httptrigger

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/engine"
)

// Channels opens the data channels that carry a request's body to its
// function and the function's streamed response back. *channels.Hub
// satisfies it.
type Channels interface {
	// OpenWriter opens a channel whose write end the caller holds, and
	// returns the ref of its read end.
	OpenWriter(bufferSize int) (*channels.LocalWriter, channels.Ref, error)
	// OpenReader opens a channel whose read end the caller holds, and
	// returns the ref of its write end. A bufferSize below 1 asks for the
	// default.
	OpenReader(bufferSize int) (*channels.LocalReader, channels.Ref, error)
}

var _ Channels = (*channels.Hub)(nil)

const (
	// bodyFrameBytes is the largest binary frame of a request body, the
	// size the iii SDKs use.
	bodyFrameBytes = 64 << 10
	// streamEndGrace is how long a function that has ended its response
	// stream may still take to return; then its call is cancelled, so
	// that the response can finish.
	streamEndGrace = time.Second
	// connectGrace is how long a function that returned null, and so
	// may be streaming its response, has for its writer to connect to the
	// response channel; past it, the null result is the answer (502).
	connectGrace = 2 * time.Second
)

// The text messages of a response stream.
const (
	msgSetStatus  = "set_status"
	msgSetHeaders = "set_headers"
)

// serveChannels calls the trigger's function with channels for the request
// body and the response, and answers with the response it returns or
// streams (see doc.go, "Streaming").
func (p *Provider) serveChannels(ctx context.Context, w http.ResponseWriter, r *http.Request, rt *route,
	req Request, raw []byte, deadline time.Time, log *slog.Logger) *httpError {
	bodyRef, done, he := p.openBody(ctx, w, r, rt, raw, deadline, log)
	defer done()
	if he != nil {
		return he
	}
	resR, resRef, err := p.cfg.Channels.OpenReader(0)
	if err != nil {
		return channelError(log, err)
	}
	req.RequestBody, req.Response = &bodyRef, &resRef
	payload, err := json.Marshal(req)
	if err != nil { // cannot happen: body is valid JSON
		resR.Close()
		return errInternal
	}

	callCtx, cancelCall := context.WithCancel(ctx)
	defer cancelCall()
	// waitCtx ends when the call returns, or with ctx.
	waitCtx, stopWait := context.WithCancel(ctx)
	defer stopWait()
	defer resR.Close() // a writer still attached gets 1001
	s := &stream{w: w, rc: http.NewResponseController(w), rt: rt, log: log, deadline: deadline,
		status: http.StatusOK, header: make(http.Header), done: make(chan struct{}),
		head: r.Method == http.MethodHead}

	// The call runs on this goroutine. The response channel is read by
	// whichever side claims it first: a small goroutine once the
	// function's writer connects (a function may stream more than the
	// buffer before it returns), or this one when the call has returned.
	// A function that never streams thus costs one goroutine that only
	// waits, not one that runs the call.
	var claimMu sync.Mutex
	claimed := false
	claim := func() bool {
		claimMu.Lock()
		defer claimMu.Unlock()
		if claimed {
			return false
		}
		claimed = true
		return true
	}
	unwatch := make(chan struct{})
	watched := make(chan struct{})
	var streamed *httpError
	aborted := false
	go func() {
		defer close(watched)
		select {
		case <-resR.Connected():
		case <-unwatch:
			return
		case <-ctx.Done():
			return
		}
		if !claim() {
			return
		}
		defer cancelCall() // an early answer must not wait for the call
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					panic(v)
				}
				aborted = true // re-raised on the handler's goroutine
			}
		}()
		streamed = s.read(ctx, r, resR, waitCtx, cancelCall)
	}()

	s.out, s.err = p.e.Fire(callCtx, rt.trigger, engine.Call{FunctionID: rt.functionID, Payload: payload, Metadata: rt.metadata})
	close(s.done)
	stopWait()
	if !claim() {
		<-watched
		if aborted {
			panic(http.ErrAbortHandler)
		}
		return streamed
	}
	close(unwatch)
	<-watched
	return s.read(ctx, r, resR, waitCtx, cancelCall)
}

// openBody opens the channel of the request body for the function: raw,
// or, when raw is nil and the route takes more than --http-max-body-bytes,
// the body streaming in while the function runs, a bounded number of
// frames ahead of its reader. done releases it once the request is over.
func (p *Provider) openBody(ctx context.Context, w http.ResponseWriter, r *http.Request, rt *route,
	raw []byte, deadline time.Time, log *slog.Logger) (ref channels.Ref, done func(), he *httpError) {
	done = func() {}
	if raw == nil && rt.maxBody > p.cfg.MaxBodyBytes {
		bodyW, ref, err := p.cfg.Channels.OpenWriter(streamBodyFrames)
		if err != nil {
			return ref, done, channelError(log, err)
		}
		var copying sync.WaitGroup
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(deadline)
		done = func() {
			// Once the request is answered, a client still uploading is
			// cut (the deadline set to now) rather than waited for.
			_ = rc.SetReadDeadline(time.Now())
			bodyW.Abort()  // the body is of no use once the request is over
			copying.Wait() // after Abort: the copy has ended
		}
		body := http.MaxBytesReader(w, r.Body, rt.maxBody)
		copying.Go(func() { copyBody(ctx, body, bodyW, log) })
		return ref, done, nil
	}
	// The whole body fits in the buffer, so these writes never wait.
	bodyW, ref, err := p.cfg.Channels.OpenWriter(max(1, (len(raw)+bodyFrameBytes-1)/bodyFrameBytes))
	if err != nil {
		return ref, done, channelError(log, err)
	}
	done = bodyW.Abort // the body is of no use once the request is over
	for b := raw; len(b) > 0; {
		n := min(len(b), bodyFrameBytes)
		if err := bodyW.Write(ctx, true, b[:n]); err != nil {
			return ref, done, channelError(log, err)
		}
		b = b[n:]
	}
	bodyW.Close()
	return ref, done, nil
}

// streamBodyFrames is how many frames of a streamed request body wait for
// the function: 1 MiB at most.
const streamBodyFrames = 16

// copyBody feeds a streamed request body into w; body is bounded by the
// route's max_body_bytes and the request's read deadline. A body over the
// limit, or cut short, aborts the channel: the function's reader sees the
// error.
func copyBody(ctx context.Context, body io.Reader, w *channels.LocalWriter, log *slog.Logger) {
	for {
		// A fresh buffer per frame: the channel keeps the frame until it
		// is read.
		buf := make([]byte, bodyFrameBytes)
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			if werr := w.Write(ctx, true, buf[:n]); werr != nil {
				return // the function or the request is gone
			}
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			w.Close()
		default: // over the limit (net/http then closes the connection), cut, or late
			log.Debug("streamed request body cut short", "error", err)
			w.Abort()
		}
		return
	}
}

// read reads the response channel until the answer is known: the buffered
// result, the streamed response, or an error. waitCtx ends when the call
// returns.
func (s *stream) read(ctx context.Context, r *http.Request, resR *channels.LocalReader,
	waitCtx context.Context, cancelCall context.CancelFunc) *httpError {
	log, rt, w := s.log, s.rt, s.w
	for {
		readCtx := waitCtx
		if s.returned {
			readCtx = ctx
		}
		f, err := resR.Next(readCtx)
		switch {
		case err == nil:
			s.started = true
			if he := s.frame(f); he != nil {
				return he
			}
		case errors.Is(err, io.EOF):
			return s.end(ctx, cancelCall)
		case ctx.Err() != nil:
			return s.expired(ctx, r)
		case !s.returned && waitCtx.Err() != nil:
			<-s.done
			s.returned = true
			if s.err != nil {
				if s.wrote {
					s.abort("function failed", s.err)
				}
				return functionFailed(ctx, log, s.err)
			}
			if !s.started && !isNull(s.out) {
				return writeResult(w, rt, s.out, log)
			}
			if s.started && !isNull(s.out) {
				log.Debug("http function returned a result after it began streaming; the result is ignored")
			}
			if !s.started {
				if he := s.awaitWriter(ctx, resR); he != nil {
					return he
				}
			}
		default: // the channel failed: cut short, expired, or the hub closed
			if s.wrote {
				s.abort("response channel failed", err)
			}
			log.Debug("http response channel failed", "error", err)
			if errors.Is(err, channels.ErrTruncated) {
				return &httpError{status: http.StatusBadGateway, code: CodeInvalidResponse,
					message: "function " + rt.functionID + " streamed an invalid response: " + err.Error()}
			}
			return &httpError{status: http.StatusServiceUnavailable, code: CodeUnavailable,
				message: "response channel of function " + rt.functionID + " failed: " + err.Error()}
		}
	}
}

// channelError answers a failure to open or fill a request's channels.
func channelError(log *slog.Logger, err error) *httpError {
	log.Debug("http request channels failed", "error", err)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return callError(err)
	}
	return &httpError{status: http.StatusServiceUnavailable, code: CodeUnavailable, message: "data channels: " + err.Error()}
}

// stream is the state of one response read from a channel.
type stream struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	rt       *route
	log      *slog.Logger
	deadline time.Time
	head     bool // a HEAD request: no body

	// The call's outcome, set before done is closed.
	done chan struct{}
	out  []byte
	err  error

	returned bool        // the call has returned and s.out, s.err were looked at
	started  bool        // a frame has arrived on the response channel
	wrote    bool        // the response header has been written
	status   int         // from set_status
	header   http.Header // from set_headers
}

// frame applies one frame of the response channel.
func (s *stream) frame(f channels.Frame) *httpError {
	if !f.Binary {
		return s.message(f.Data)
	}
	if !s.wrote {
		s.writeHeader()
	}
	if s.head || !bodyAllowed(s.status) || len(f.Data) == 0 {
		return nil
	}
	if _, err := s.w.Write(f.Data); err != nil {
		s.abort("write response", err)
	}
	if err := s.rc.Flush(); err != nil {
		s.abort("flush response", err)
	}
	return nil
}

// message applies a text message: set_status or set_headers before the
// header is written. Others are ignored.
func (s *stream) message(data []byte) *httpError {
	var m struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &m); err != nil || (m.Type != msgSetStatus && m.Type != msgSetHeaders) {
		s.log.Debug("http response channel: message ignored", "message", truncate(data, 200))
		return nil
	}
	if s.wrote {
		s.log.Debug("http response channel: message after the response header ignored", "type", m.Type)
		return nil
	}
	var err error
	if m.Type == msgSetStatus {
		var in struct {
			StatusCode json.RawMessage `json:"status_code"`
		}
		_ = json.Unmarshal(data, &in) // an object, as decoding m showed
		s.status, err = parseStatus(in.StatusCode)
	} else {
		var in struct {
			Headers map[string]json.RawMessage `json:"headers"`
		}
		var h http.Header
		if err = json.Unmarshal(data, &in); err != nil {
			err = errors.New("headers must be an object")
		} else if h, err = parseHeaders(in.Headers); err == nil {
			for k, vs := range h {
				s.header[k] = vs
			}
		}
	}
	if err != nil {
		s.log.Debug("http function streamed an invalid response", "error", err)
		return &httpError{status: http.StatusBadGateway, code: CodeInvalidResponse,
			message: "function " + s.rt.functionID + " streamed an invalid " + m.Type + ": " + err.Error()}
	}
	return nil
}

// writeHeader writes the status and headers collected so far. From here
// on, Config.Timeout also bounds writing.
func (s *stream) writeHeader() {
	s.wrote = true
	h := s.w.Header()
	for k, vs := range s.header {
		h[k] = vs
	}
	_ = s.rc.SetWriteDeadline(s.deadline) // net/http resets it after the request
	s.w.WriteHeader(s.status)
}

// awaitWriter waits, after the function returned null without streaming
// anything yet, for its writer to connect to the response channel: a
// function that streams connects at once, one that merely returned null is
// answered with 502 after connectGrace instead of at the Timeout.
func (s *stream) awaitWriter(ctx context.Context, resR *channels.LocalReader) *httpError {
	t := time.NewTimer(connectGrace)
	defer t.Stop()
	select {
	case <-resR.Connected():
	case <-ctx.Done(): // the read loop answers
	case <-t.C:
		s.log.Debug("http function returned null and no writer connected to its response channel")
		return &httpError{status: http.StatusBadGateway, code: CodeInvalidResponse,
			message: "function " + s.rt.functionID + " returned null and streamed no response"}
	}
	return nil
}

// end finishes the response once the function has ended its stream. A
// function still running has streamEndGrace to return (then its call is
// cancelled), and what it returns still counts: a failure is answered as
// such (or cuts the response off, if its header was written), and a result
// when nothing at all was streamed is the response.
func (s *stream) end(ctx context.Context, cancelCall context.CancelFunc) *httpError {
	if !s.returned {
		t := time.NewTimer(streamEndGrace)
		select {
		case <-s.done:
			s.returned = true
		case <-t.C:
			s.log.Debug("http function did not return after ending its response stream; cancelling it")
		case <-ctx.Done():
		}
		t.Stop()
		cancelCall()
		<-s.done
	}
	if s.returned {
		if s.err != nil {
			if s.wrote {
				s.abort("function failed", s.err)
			}
			return functionFailed(ctx, s.log, s.err)
		}
		if !s.started && !isNull(s.out) {
			return writeResult(s.w, s.rt, s.out, s.log)
		}
	}
	if !s.wrote {
		s.writeHeader()
	}
	return nil
}

// expired answers when ctx ended (the Timeout, or the client went away)
// before the response was complete.
func (s *stream) expired(ctx context.Context, r *http.Request) *httpError {
	<-s.done // the call's context has ended too
	if s.wrote {
		if r.Context().Err() != nil {
			return nil // the client is gone: nobody to tell
		}
		s.abort("response stream not finished in time", ctx.Err())
	}
	if !s.returned {
		if s.err != nil {
			return functionFailed(ctx, s.log, s.err)
		}
		if !s.started && !isNull(s.out) {
			return writeResult(s.w, s.rt, s.out, s.log)
		}
	}
	msg := "function " + s.rt.functionID + " did not finish streaming its response in time"
	if !s.started {
		msg = "function " + s.rt.functionID + " returned no response and wrote none to its response channel"
	}
	s.log.Debug("http response stream timed out", "started", s.started)
	return &httpError{status: http.StatusGatewayTimeout, code: CodeTimeout, message: msg}
}

// abort ends the request after its header was written: the connection is
// closed without finishing the response, so the client sees it cut short.
func (s *stream) abort(what string, err error) {
	s.log.Debug("http response stream aborted", "reason", what, "error", err)
	panic(http.ErrAbortHandler)
}

// truncate returns b as a string of at most n bytes and an ellipsis.
func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

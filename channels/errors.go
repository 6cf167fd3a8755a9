package channels

import (
	"errors"

	"github.com/trinehq/trine/internal/wsconn"
)

// Errors of the engine's own ends (LocalReader, LocalWriter).
var (
	// ErrEndClosed is returned by LocalReader.Next after Close, and by
	// LocalWriter.Write after Close or Abort.
	ErrEndClosed = errors.New("channels: end closed")
	// ErrTruncated is returned by LocalReader.Next when the remote writer
	// was cut off for sending a frame over Config.MaxFrameBytes, or for
	// breaking the protocol otherwise (a text frame that is not UTF-8):
	// the stream ended early.
	ErrTruncated = errors.New("channels: stream cut short: the writer sent a frame over the size limit")
)

// Why a channel was cancelled; each becomes the close status of the ends
// still attached (abortStatus).
var (
	errReaderGone  = errors.New("channels: reader went away")
	errWriterGone  = errors.New("channels: writer went away")
	errExpired     = errors.New("channels: channel expired before both ends attached")
	errCreatorGone = errors.New("channels: the connection that created the channel went away")
	errClosed      = errors.New("channels: hub closed")
)

// closeStatus is a WebSocket close code and reason.
type closeStatus struct {
	code   int
	reason string
}

var (
	// statusEOF ends a stream the writer finished.
	statusEOF = closeStatus{wsconn.CloseNormal, ""}
	// statusWriterTooBig ends the reader's stream when the writer was cut
	// off for sending an oversize frame: the stream is truncated.
	statusWriterTooBig = closeStatus{wsconn.CloseServerError, "writer sent a frame over the size limit"}
	// statusWriterBroke ends it when the writer broke the protocol
	// otherwise (invalid UTF-8 in a text message, say): truncated too.
	statusWriterBroke = closeStatus{wsconn.CloseServerError, "writer broke the WebSocket protocol"}
)

// abortStatus is the close status for an end whose channel was cancelled
// with cause.
func abortStatus(cause error) closeStatus {
	switch {
	case errors.Is(cause, errReaderGone):
		return closeStatus{wsconn.CloseGoingAway, "reader went away"}
	case errors.Is(cause, errWriterGone):
		return closeStatus{wsconn.CloseGoingAway, "writer went away"}
	case errors.Is(cause, errExpired):
		return closeStatus{wsconn.CloseGoingAway, "channel expired"}
	case errors.Is(cause, errCreatorGone):
		return closeStatus{wsconn.CloseGoingAway, "creator went away"}
	case errors.Is(cause, errClosed):
		return closeStatus{wsconn.CloseGoingAway, "engine shutting down"}
	default:
		return closeStatus{wsconn.CloseServerError, "channel aborted"}
	}
}

// errFreed is budget.acquire's error once its channel is torn down.
var errFreed = errors.New("channels: channel torn down")

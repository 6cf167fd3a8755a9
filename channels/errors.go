package channels

import (
	"errors"

	"github.com/coder/websocket"
)

// Errors of the engine's own ends (LocalReader, LocalWriter).
var (
	// ErrEndClosed is returned by LocalReader.Next after Close, and by
	// LocalWriter.Write after Close or Abort.
	ErrEndClosed = errors.New("channels: end closed")
	// ErrTruncated is returned by LocalReader.Next when the remote writer
	// was cut off for sending a frame over Config.MaxFrameBytes: the
	// stream ended early.
	ErrTruncated = errors.New("channels: stream cut short: the writer sent a frame over the size limit")
)

// Why a channel was cancelled; each becomes the close status of the ends
// still attached (abortStatus).
var (
	errReaderGone = errors.New("channels: reader went away")
	errWriterGone = errors.New("channels: writer went away")
	errExpired    = errors.New("channels: channel expired before both ends attached")
	errClosed     = errors.New("channels: hub closed")
)

// closeStatus is a WebSocket close code and reason.
type closeStatus struct {
	code   websocket.StatusCode
	reason string
}

var (
	// statusEOF ends a stream the writer finished.
	statusEOF = closeStatus{websocket.StatusNormalClosure, ""}
	// statusWriterTooBig ends the reader's stream when the writer was cut
	// off for sending an oversize frame: the stream is truncated.
	statusWriterTooBig = closeStatus{websocket.StatusInternalError, "writer sent a frame over the size limit"}
)

// abortStatus is the close status for an end whose channel was cancelled
// with cause.
func abortStatus(cause error) closeStatus {
	switch {
	case errors.Is(cause, errReaderGone):
		return closeStatus{websocket.StatusGoingAway, "reader went away"}
	case errors.Is(cause, errWriterGone):
		return closeStatus{websocket.StatusGoingAway, "writer went away"}
	case errors.Is(cause, errExpired):
		return closeStatus{websocket.StatusGoingAway, "channel expired"}
	case errors.Is(cause, errClosed):
		return closeStatus{websocket.StatusGoingAway, "engine shutting down"}
	default:
		return closeStatus{websocket.StatusInternalError, "channel aborted"}
	}
}

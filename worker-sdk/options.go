package trine

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxHeaderBytes bounds what a worker sends with every RPC: WithHeader's
// names and values and WithToken's authorization header, together.
const MaxHeaderBytes = 64 << 10

type options struct {
	name, namespace, version string
	concurrency              int
	callTimeout              time.Duration
	closeTimeout             time.Duration
	backoffMin, backoffMax   time.Duration
	keepalive                time.Duration
	logger                   *slog.Logger
	onError                  func(error)
	dialer                   func(ctx context.Context, addr string) (net.Conn, error)
	header                   http.Header
	tls                      *tls.Config
	token                    string
}

func defaultOptions() options {
	host, _ := os.Hostname()
	return options{
		name:         fmt.Sprintf("%s:%d", host, os.Getpid()),
		namespace:    "default",
		version:      "dev",
		callTimeout:  30 * time.Second,
		closeTimeout: 10 * time.Second,
		backoffMin:   100 * time.Millisecond,
		backoffMax:   10 * time.Second,
		keepalive:    10 * time.Second,
		logger:       defaultLogger(),
		header:       http.Header{},
	}
}

// defaultLogger writes warnings and errors to stderr, as text.
func defaultLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func (o *options) validate() error {
	for kind, v := range map[string]string{"worker name": o.name, "namespace": o.namespace} {
		if v == "" || len(v) > 256 || !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) {
			return errorf(CodeInvalidArgument, "%s %q must be 1 to 256 bytes of printable UTF-8", kind, v)
		}
	}
	if strings.ContainsFunc(o.token, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		return errorf(CodeInvalidArgument, "the token must be printable ASCII")
	}
	if err := validateMetadata(o.metadata()); err != nil {
		return err
	}
	switch {
	case o.concurrency < 0:
		return errorf(CodeInvalidArgument, "concurrency must not be negative")
	case o.callTimeout <= 0, o.closeTimeout <= 0, o.keepalive <= 0:
		return errorf(CodeInvalidArgument, "timeouts must be positive")
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return errorf(CodeInvalidArgument, "reconnect backoff needs 0 < min <= max")
	}
	return nil
}

// validateMetadata checks the headers (and token) sent as gRPC metadata.
func validateMetadata(md map[string]string) error {
	size := 0
	for k, v := range md {
		size += len(k) + len(v)
	}
	if size > MaxHeaderBytes {
		return errorf(CodeInvalidArgument, "the headers and token are %d bytes, the limit is %d", size, MaxHeaderBytes)
	}
	for k, v := range md {
		if k == "" || strings.HasPrefix(k, "grpc-") || strings.HasSuffix(k, "-bin") || strings.ContainsFunc(k, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}) {
			return errorf(CodeInvalidArgument, "header %q cannot be sent as gRPC metadata (letters, digits, - _ . only; no grpc- prefix, no -bin suffix)", k)
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			return errorf(CodeInvalidArgument, "header %q: the value must be printable ASCII", k)
		}
	}
	return nil
}

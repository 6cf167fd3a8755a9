// Package natsembed runs the NATS server that `trine engine` embeds and
// connects to it in-process, or connects to an external NATS deployment.
//
// Concurrency: a Server is safe for concurrent use. Start runs the embedded
// nats-server, which starts its own goroutines, and opens the in-process
// client connection; Close closes the connection, shuts the server down and
// waits for it.
package natsembed

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	neturl "net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// readyTimeout bounds the embedded server's start.
const readyTimeout = 10 * time.Second

// Options configure Start.
type Options struct {
	// Name names the server and its connection.
	Name string
	// Listen is the address other processes reach the embedded server on
	// (HOST:PORT, port 0 for any); "" accepts no network clients.
	Listen string
	// Logger receives connection events. Default: discard.
	Logger *slog.Logger
	// JetStreamDir, if set, enables JetStream on the embedded server with
	// its storage there.
	JetStreamDir string
	// ConnectTimeout is how long Connect keeps trying while no server of
	// the list answers (a cluster started at the same time as the
	// process). Default 30s.
	ConnectTimeout time.Duration

	// Token, for Start, is the token other processes must present on
	// Listen ("" for none).
	Token string
	// For Connect: a credentials file (user JWT and seed), an NKey seed
	// file, and the client TLS (the CA that verifies the servers, and a
	// client certificate). User and password, or a token, go in the URL.
	CredsFile, NKeySeedFile string
	TLS                     *tls.Config
}

// Server is a NATS connection and, when embedded, the server behind it.
type Server struct {
	NS   *server.Server // nil for an external deployment
	Conn *nats.Conn
}

// Start runs an embedded NATS server and returns an in-process connection
// to it.
func Start(o Options) (*Server, error) {
	opts := &server.Options{ServerName: o.Name, NoSigs: true, NoLog: true, DontListen: o.Listen == "",
		JetStream: o.JetStreamDir != "", StoreDir: o.JetStreamDir, Authorization: o.Token}
	if o.Listen != "" {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats: listen address %q: %w", o.Listen, err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("nats: listen address %q: bad port", o.Listen)
		}
		if opts.Port == 0 {
			opts.Port = server.RANDOM_PORT
		}
		// Fail now, with the usual message, if the port is taken: the
		// server itself would only log it.
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(max(opts.Port, 0))))
		if err != nil {
			return nil, fmt.Errorf("listen nats %s: %w", o.Listen, unwrapOpError(err))
		}
		l.Close()
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		ns.Shutdown()
		return nil, errors.New("nats: embedded server did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name(o.Name), nats.MaxReconnects(-1), nats.Token(o.Token))
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("nats: connect in-process: %w", err)
	}
	return &Server{NS: ns, Conn: nc}, nil
}

func unwrapOpError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

// Connect connects to an external NATS deployment (a comma-separated URL
// list). While no server of the list answers, it tries again with backoff
// for up to Options.ConnectTimeout, so that a process started with its
// cluster waits for it. The connection then reconnects for ever, and logs
// when it loses and regains the server.
func Connect(url string, o Options) (*Server, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	wait := 100 * time.Millisecond
	for {
		s, err := connect(url, o, log)
		if err == nil || !errors.Is(err, nats.ErrNoServers) || time.Now().Add(wait).After(deadline) {
			return s, err
		}
		log.Info("waiting for NATS", "url", Redact(url), "retry_in", wait, "error", err)
		time.Sleep(wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// authOptions are the credentials and TLS of o, as nats options.
func authOptions(o Options) ([]nats.Option, error) {
	var opts []nats.Option
	if o.CredsFile != "" {
		if _, err := os.Stat(o.CredsFile); err != nil {
			return nil, fmt.Errorf("nats: credentials file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey seed file %s: %w", o.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	}
	if o.TLS != nil {
		opts = append(opts, nats.Secure(o.TLS))
	}
	return opts, nil
}

func connect(url string, o Options, log *slog.Logger) (*Server, error) {
	auth, err := authOptions(o)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, append(auth, nats.Name(o.Name), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "error", err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats error", "subject", subj, "error", err)
		}))...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect %s: %w", Redact(url), err)
	}
	return &Server{Conn: nc}, nil
}

// Addr is the embedded server's client address, or "" when it has none.
func (s *Server) Addr() string {
	if s.NS == nil {
		return ""
	}
	if a, ok := s.NS.Addr().(*net.TCPAddr); ok && a != nil {
		return a.String()
	}
	return ""
}

// Close closes the connection and stops the embedded server.
func (s *Server) Close() {
	s.Conn.Close()
	if s.NS != nil {
		s.NS.Shutdown()
		s.NS.WaitForShutdown()
	}
}

// Redact hides the user info (password or token) of every URL of a
// comma-separated list, for logs and errors.
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := neturl.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, has := u.User.Password(); has {
			u.User = neturl.UserPassword(u.User.Username(), "redacted")
		} else {
			u.User = neturl.User("redacted")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

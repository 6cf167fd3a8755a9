// Package natsembed runs the NATS server that `trine engine` embeds, and
// connects to it in-process.
package natsembed

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// readyTimeout bounds the embedded server's start.
const readyTimeout = 10 * time.Second

// Server is a running embedded NATS server with an in-process connection.
type Server struct {
	NS   *server.Server
	Conn *nats.Conn
}

// Start runs a NATS server that accepts no network clients and returns an
// in-process connection to it.
func Start(name string) (*Server, error) {
	ns, err := server.NewServer(&server.Options{ServerName: name, DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		ns.Shutdown()
		return nil, errors.New("nats: embedded server did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("nats: connect in-process: %w", err)
	}
	return &Server{NS: ns, Conn: nc}, nil
}

// Close drains the connection and stops the server.
func (s *Server) Close() {
	s.Conn.Close()
	s.NS.Shutdown()
	s.NS.WaitForShutdown()
}

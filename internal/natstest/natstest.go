// Package natstest starts a real embedded nats-server for tests, with
// JetStream on a temporary directory, and connects to it.
//
// Concurrency: a test helper. Start and StartCluster run nats-servers,
// whose goroutines t.Cleanup stops and waits for; the servers are safe for
// concurrent use.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Start runs a nats-server on a random loopback port until the test ends.
func Start(t testing.TB) *server.Server {
	t.Helper()
	return StartOptions(t, server.Options{JetStream: true})
}

// Connect opens a client connection to ns, closed when the test ends.
func Connect(t testing.TB, ns *server.Server) *nats.Conn {
	t.Helper()
	return ConnectURL(t, ns.ClientURL())
}

// ConnectURL opens a client connection to url (a server or a cluster's
// list), closed when the test ends.
func ConnectURL(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// StartOptions runs a nats-server with o on loopback until the test ends
// (or its Shutdown): o.Port 0 picks a free port, and JetStream, when on,
// stores in a temporary directory. Start a server without JetStream with
// StartOptions(t, server.Options{}).
func StartOptions(t testing.TB, o server.Options) *server.Server {
	t.Helper()
	o.Host, o.NoLog, o.NoSigs = "127.0.0.1", true, true
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	if o.JetStream && o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	ns, err := server.NewServer(&o)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("natstest: server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

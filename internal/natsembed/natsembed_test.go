package natsembed_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/internal/natsembed"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestInProcessOnly(t *testing.T) {
	s, err := natsembed.Start(natsembed.Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	roundTrip(t, s, s)
	if s.Addr() != "" {
		t.Fatalf("the embedded server listens on %s", s.Addr())
	}
}

func TestListenerAndExternalConnect(t *testing.T) {
	s, err := natsembed.Start(natsembed.Options{Name: "test", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || strings.HasSuffix(s.Addr(), ":0") {
		t.Fatalf("Addr = %q", s.Addr())
	}
	ext, err := natsembed.Connect("nats://"+s.Addr(), natsembed.Options{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	roundTrip(t, s, ext)
	roundTrip(t, ext, s)
}

func TestBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = natsembed.Start(natsembed.Options{Name: "test", Listen: l.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("busy port: %v", err)
	}
}

// Connect keeps trying while nothing answers, for ConnectTimeout, then
// fails.
func TestConnectFails(t *testing.T) {
	start := time.Now()
	if _, err := natsembed.Connect("nats://127.0.0.1:1", natsembed.Options{ConnectTimeout: 500 * time.Millisecond}); err == nil {
		t.Fatal("connected to nothing")
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Fatalf("gave up after %v, want about the 500ms ConnectTimeout", d)
	}
}

// A server that comes up while Connect waits is connected to.
func TestConnectWaitsForTheServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	started := make(chan *natsembed.Server, 1)
	go func() {
		time.Sleep(400 * time.Millisecond)
		s, err := natsembed.Start(natsembed.Options{Name: "late", Listen: addr})
		if err != nil {
			t.Error(err)
		}
		started <- s
	}()
	c, err := natsembed.Connect("nats://"+addr, natsembed.Options{ConnectTimeout: 10 * time.Second})
	s := <-started
	if s != nil {
		defer s.Close()
	}
	if err != nil {
		t.Fatalf("Connect while the server came up: %v", err)
	}
	c.Close()
}

func roundTrip(t *testing.T, from, to *natsembed.Server) {
	t.Helper()
	sub, err := to.Conn.SubscribeSync("x.y")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := to.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := from.Conn.Publish("x.y", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "hi" {
		t.Fatalf("got %v %v", m, err)
	}
}

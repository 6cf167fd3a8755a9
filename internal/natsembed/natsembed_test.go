package natsembed_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/internal/natsembed"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestInProcessRoundTrip(t *testing.T) {
	s, err := natsembed.Start("test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub, err := s.Conn.SubscribeSync("x.y")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Conn.Publish("x.y", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "hi" {
		t.Fatalf("got %v %v", m, err)
	}
	if s.NS.ClientURL() != "" && s.NS.Addr() != nil {
		t.Fatalf("the embedded server listens on %v", s.NS.Addr())
	}
}

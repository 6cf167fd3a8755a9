package jsboot_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/trinehq/trine/internal/jsboot"
	"github.com/trinehq/trine/internal/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Three engines create the same replicated streams while their cluster
// boots: each waits for JetStream instead of failing.
func TestCreateWhileTheClusterBoots(t *testing.T) {
	cl := natstest.StartCluster(t, 3)
	for i := range cl.Nodes {
		cl.Stop(i)
	}
	var conns []*nats.Conn
	for i := range 3 {
		nc, err := nats.Connect(cl.URLs(i), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		conns = append(conns, nc)
	}
	errs := make(chan error, 6)
	var wg sync.WaitGroup
	for _, nc := range conns {
		wg.Go(func() {
			js, err := jetstream.New(nc)
			if err != nil {
				errs <- err
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			for _, name := range []string{"A", "B"} {
				_, err := jsboot.CreateOrUpdateStream(ctx, js, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Replicas: 3})
				errs <- err
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // the engines are already asking
	cl.RestartAll()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// A configuration JetStream refuses is not waited on.
func TestPermanentErrorReturnsAtOnce(t *testing.T) {
	ns := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = jsboot.CreateOrUpdateStream(context.Background(), js, jetstream.StreamConfig{Name: "A", Subjects: []string{"a.>"}, Replicas: 3})
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("R3 on one server: %v after %v", err, time.Since(start))
	}
}

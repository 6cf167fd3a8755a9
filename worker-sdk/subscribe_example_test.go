package trine_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/natsembed"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/store"
	trine "github.com/trinehq/trine/worker-sdk"
)

// exampleGateway runs an engine with the StreamModule, an embedded NATS
// server and the stream gateway, as `trine engine` does, and returns the
// gateway's URL, the engine's address and a stop function.
func exampleGateway() (string, string, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	r, err := enginetest.Serve(lis, engine.Config{}, grpcserver.Config{})
	if err != nil {
		panic(err)
	}
	ns, err := natsembed.Start(natsembed.Options{Name: "example"})
	if err != nil {
		panic(err)
	}
	m, err := streammodule.New(streammodule.Config{
		OpenStore: func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil },
		Publisher: natsfanout.NewPublisher(ns.Conn),
	})
	if err != nil {
		panic(err)
	}
	if err := m.Register(r.Engine); err != nil {
		panic(err)
	}
	gw, err := gateway.New(gateway.Config{Backend: m, Events: natsfanout.NewSubscriber(ns.Conn), Caller: r.Engine})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(gw)
	return srv.URL, r.Addr, func() { gw.Close(); srv.Close(); r.Stop(); _ = m.Close(); ns.Close() }
}

// A Go program following a group as a browser does: a snapshot, then every
// change. After a dropped connection it resumes where it stopped.
func ExampleSubscribe() {
	gatewayURL, engineAddr, stop := exampleGateway() // usually "ws://127.0.0.1:3112" and "127.0.0.1:49134", from `trine engine`
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	sub, err := trine.Subscribe(ctx, gatewayURL, "todos", "inbox")
	if err != nil {
		fmt.Println("subscribe:", err)
		return
	}
	defer sub.Close()
	ev := <-sub.Events() // the snapshot
	fmt.Println(ev.Seq, ev.Type, ev.ItemIDs, string(ev.Data))

	w, _ := trine.NewWorker(engineAddr)
	defer w.Close()
	if err := w.Connect(ctx); err != nil {
		fmt.Println("connect:", err)
		return
	}
	todos := trine.NewStream[Todo](w, "todos")
	_, _ = todos.Set(ctx, "inbox", "t1", Todo{Title: "write docs"})
	_, _ = todos.Update(ctx, "inbox", "t1", []trine.UpdateOp{trine.OpSet("done", true)})
	_, _ = todos.Send(ctx, "inbox", "typing", map[string]string{"user": "ann"})

	for ev := range sub.Events() {
		if ev.Type == "event" {
			fmt.Println(ev.Seq, ev.Type, ev.EventType, string(ev.Data))
			break
		}
		fmt.Println(ev.Seq, ev.Type, ev.ItemID, string(ev.Data))
	}
	// Output:
	// 0 sync [] []
	// 1 create t1 {"title":"write docs","done":false}
	// 2 update t1 {"done":true,"title":"write docs"}
	// 3 event typing {"user":"ann"}
}

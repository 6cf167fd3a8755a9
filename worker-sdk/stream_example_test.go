package trine_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/store"
	trine "github.com/trinehq/trine/worker-sdk"
)

// exampleStreamEngine runs an engine with the StreamModule on a loopback
// port, as `trine engine` does, and returns its address and a stop function.
func exampleStreamEngine() (string, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	r, err := enginetest.Serve(lis, engine.Config{}, grpcserver.Config{})
	if err != nil {
		panic(err)
	}
	m, err := streammodule.New(streammodule.Config{OpenStore: func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil }})
	if err != nil {
		panic(err)
	}
	if err := m.Register(r.Engine); err != nil {
		panic(err)
	}
	return r.Addr, func() { r.Stop(); _ = m.Close() }
}

type Todo struct {
	Title string `json:"title"`
	Done  bool   `json:"done"`
}

// A typed view of a stream: writes return the change and its sequence, and
// WithIfSeq makes a write conditional.
func ExampleNewStream() {
	addr, stop := exampleStreamEngine() // usually "127.0.0.1:49134", from `trine engine`
	defer stop()
	w, _ := trine.NewWorker(addr)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		fmt.Println("connect:", err)
		return
	}

	todos := trine.NewStream[Todo](w, "todos")
	ch, _ := todos.Set(ctx, "inbox", "t1", Todo{Title: "write docs"})
	fmt.Println(ch.Old == nil, ch.New.Title, ch.Seq)

	ch, _ = todos.Update(ctx, "inbox", "t1", []trine.UpdateOp{trine.OpSet("done", true)}, trine.WithIfSeq(ch.Seq))
	fmt.Println(ch.Old.Done, ch.New.Done, ch.Seq)

	_, err := todos.Set(ctx, "inbox", "t1", Todo{Title: "stale"}, trine.WithIfSeq(1))
	fmt.Println(errors.Is(err, trine.ErrConflict))

	item, found, _ := todos.Get(ctx, "inbox", "t1")
	fmt.Println(found, item.ID, item.Data.Title, item.Seq)

	for item, err := range todos.All(ctx, "inbox") {
		if err != nil {
			fmt.Println(err)
			break
		}
		fmt.Println(item.ID, item.Data.Done)
	}
	// Output:
	// true write docs 1
	// false true 2
	// true
	// true t1 write docs 2
	// t1 true
}

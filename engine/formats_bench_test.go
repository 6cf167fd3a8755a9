//go:build unix

package engine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/enginetest"
)

// echoPeer answers every invocation with its payload at once.
type echoPeer struct{ s *engine.Session }

func (p *echoPeer) Invoke(_ context.Context, inv engine.Invocation) error {
	go p.s.Result(inv.InvocationID, inv.Payload, nil)
	return nil
}
func (*echoPeer) Cancel(string) {}
func (*echoPeer) ConfigureTrigger(context.Context, string, engine.Trigger, bool) error {
	return nil
}

// BenchmarkCallRequestFormat is a call to a worker function that answers
// at once, without a request_format and with a 10-field one: the
// difference is what the engine's check costs a call.
func BenchmarkCallRequestFormat(b *testing.B) {
	for _, bc := range []struct{ name, format string }{{"none", ""}, {"10-fields", enginetest.TenFieldsSchema}} {
		b.Run(bc.name, func(b *testing.B) {
			e, err := engine.New(engine.Config{})
			if err != nil {
				b.Fatal(err)
			}
			p := &echoPeer{}
			s, err := e.Attach(engine.WorkerInfo{Name: "w"}, p)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			p.s = s
			if err := s.RegisterFunctionSpec("bench::echo", engine.FunctionSpec{RequestFormat: json.RawMessage(bc.format)}); err != nil {
				b.Fatal(err)
			}
			c := engine.Call{FunctionID: "bench::echo", Payload: []byte(enginetest.TenFieldsValue)}
			b.ReportAllocs()
			cpu := enginetest.SelfCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.Trigger(context.Background(), c); err != nil {
						b.Error(err)
						return
					}
				}
			})
			// CPU time is what a loaded machine does not inflate.
			b.ReportMetric(float64(enginetest.SelfCPU()-cpu)/float64(b.N)/float64(time.Microsecond), "cpu-µs/op")
		})
	}
}

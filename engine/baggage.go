package engine

import (
	"context"
	"encoding/json"

	"go.opentelemetry.io/otel/baggage"

	"github.com/trinehq/trine/codes"
)

// iii's baggage functions. Unlike iii's, which read the engine's ambient
// context, they read the W3C baggage the call itself carries (the iii
// transport's baggage field, the gRPC Call's baggage), so a worker sees
// what its caller propagated.
const (
	FnBaggageGet    = "engine::baggage::get"
	FnBaggageSet    = "engine::baggage::set"
	FnBaggageGetAll = "engine::baggage::get_all"
)

// maxBaggageBytes is W3C's limit on a baggage header.
const maxBaggageBytes = 8192

func (e *Engine) registerBaggageFunctions() error {
	type kv struct {
		Key   *string `json:"key"`
		Value *string `json:"value"`
	}
	parse := func(c Call) (baggage.Baggage, error) {
		if len(c.Baggage) > maxBaggageBytes {
			return baggage.Baggage{}, Errorf(codes.InvalidArgument, "the call's baggage is %d bytes, the limit is %d", len(c.Baggage), maxBaggageBytes)
		}
		b, err := baggage.Parse(c.Baggage)
		if err != nil {
			return baggage.Baggage{}, Errorf(codes.InvalidArgument, "the call's baggage does not parse: %v", err)
		}
		return b, nil
	}
	fns := []struct {
		id, desc string
		h        func(Call, kv) (any, error)
	}{
		{FnBaggageGet, "Read one entry of the W3C baggage this call carries: {key} → {value} (null when absent)", func(c Call, in kv) (any, error) {
			if in.Key == nil {
				return nil, Errorf(codes.InvalidArgument, "%s: missing field key", FnBaggageGet)
			}
			b, err := parse(c)
			if err != nil {
				return nil, err
			}
			var v *string
			if m := b.Member(*in.Key); m.Key() != "" {
				s := m.Value()
				v = &s
			}
			return map[string]*string{"value": v}, nil
		}},
		{FnBaggageGetAll, "Read the W3C baggage this call carries: {baggage: {key: value}}", func(c Call, _ kv) (any, error) {
			b, err := parse(c)
			if err != nil {
				return nil, err
			}
			all := map[string]string{}
			for _, m := range b.Members() {
				all[m.Key()] = m.Value()
			}
			return map[string]any{"baggage": all}, nil
		}},
		{FnBaggageSet, "Add {key, value} to this call's baggage: {success, baggage}, the header to send on later calls (nothing changes for the caller otherwise, as in iii)", func(c Call, in kv) (any, error) {
			if in.Key == nil || in.Value == nil {
				return nil, Errorf(codes.InvalidArgument, "%s: want {key, value}", FnBaggageSet)
			}
			b, err := parse(c)
			if err != nil {
				return nil, err
			}
			m, err := baggage.NewMember(*in.Key, *in.Value)
			if err != nil {
				m, err = baggage.NewMemberRaw(*in.Key, *in.Value)
			}
			if err != nil {
				return nil, Errorf(codes.InvalidArgument, "%s: %v", FnBaggageSet, err)
			}
			if b, err = b.SetMember(m); err != nil {
				return nil, Errorf(codes.InvalidArgument, "%s: %v", FnBaggageSet, err)
			}
			h := b.String()
			if len(h) > maxBaggageBytes {
				return nil, Errorf(codes.InvalidArgument, "%s: the baggage would be %d bytes, the limit is %d", FnBaggageSet, len(h), maxBaggageBytes)
			}
			return map[string]any{"success": true, "baggage": h}, nil
		}},
	}
	for _, f := range fns {
		h := HandlerFunc(func(_ context.Context, c Call) ([]byte, error) {
			var in kv
			if err := decodeInput(c.Payload, &in); err != nil {
				return nil, err
			}
			out, err := f.h(c, in)
			if err != nil {
				return nil, err
			}
			return json.Marshal(out)
		})
		if err := e.RegisterFunction(f.id, f.desc, h); err != nil {
			return err
		}
	}
	return nil
}

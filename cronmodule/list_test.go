package cronmodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/triggerapi"
)

// TestList: cron::list shows each cron trigger with its schedule, its
// last fire once one came due and its next one, and why its last run
// failed; it pages by trigger id and ends a page early past MaxListBytes,
// shows only the triggers whose function the caller may call, and refuses
// a limit out of bounds.
func TestList(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	n := startNode(t, ns.ClientURL(), LocalClaims{}, func(triggerapi.CronEvent) {})
	if err := n.e.RegisterFunction("test::fail", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, errors.New("broken")
	})); err != nil {
		t.Fatal(err)
	}
	for id, fn := range map[string]string{"a-ok": "test::job", "b-fail": "test::fail"} {
		cfg := json.RawMessage(`{"expression":"* * * * * *","timezone":"Europe/Paris"}`)
		if err := n.s.RegisterTrigger(t.Context(), engine.Trigger{ID: id, Type: "cron", FunctionID: fn, Config: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	type page struct {
		Jobs []JobStatus
		More bool
	}
	list := func(g *engine.Grant, in string) (page, error) {
		out, err := n.e.Trigger(t.Context(), engine.Call{FunctionID: FnList, Payload: []byte(in), Grant: g})
		var p page
		if err == nil {
			err = json.Unmarshal(out, &p)
		}
		return p, err
	}
	var p page
	poll.CheckFor(t, 5*time.Second, func() error {
		var err error
		if p, err = list(nil, `{}`); err != nil {
			return err
		}
		if len(p.Jobs) != 2 || p.Jobs[0].LastFireMS == 0 || p.Jobs[1].LastError == "" {
			return fmt.Errorf("cron::list = %+v, want both fired and b-fail's error", p)
		}
		return nil
	})
	a, b := p.Jobs[0], p.Jobs[1]
	if a.TriggerID != "a-ok" || a.FunctionID != "test::job" || a.Expression != "* * * * * *" || a.Timezone != "Europe/Paris" || a.LastError != "" ||
		a.NextFireMS <= a.LastFireMS || a.NextFireMS > time.Now().Add(2*time.Second).UnixMilli() {
		t.Fatalf("a-ok = %+v", a)
	}
	if b.TriggerID != "b-fail" || b.LastError == "" {
		t.Fatalf("b-fail = %+v, want its failure", b)
	}
	if p, err := list(nil, `{"limit":1}`); err != nil || len(p.Jobs) != 1 || !p.More || p.Jobs[0].TriggerID != "a-ok" {
		t.Fatalf("limit 1: %+v %v", p, err)
	}
	if p, err := list(nil, `{"limit":1,"after":"a-ok"}`); err != nil || len(p.Jobs) != 1 || p.More || p.Jobs[0].TriggerID != "b-fail" {
		t.Fatalf("after a-ok: %+v %v", p, err)
	}
	g, err := n.e.Authenticate(t.Context(), &engine.Access{ExposeFunctions: []engine.Filter{{Match: "cron::*"}, {Match: "test::job"}}}, engine.AuthInput{})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := list(g, `{}`); err != nil || len(p.Jobs) != 1 || p.Jobs[0].TriggerID != "a-ok" {
		t.Fatalf("a caller that may call test::job only: %+v %v", p, err)
	}
	// A page ends early past MaxListBytes, with more.
	n.m.cfg.MaxListBytes = 1
	if p, err := list(nil, `{}`); err != nil || len(p.Jobs) != 1 || !p.More {
		t.Fatalf("a page of at most 1 byte: %+v %v, want one job and more", p, err)
	}
	// The bound counts the entry that would pass it: room for a-ok and
	// a few bytes more is a page of a-ok alone.
	n.m.cfg.MaxListBytes = len("a-ok"+"test::job"+"* * * * * *"+"Europe/Paris") + 128 + 8
	if p, err := list(nil, `{}`); err != nil || len(p.Jobs) != 1 || !p.More {
		t.Fatalf("a page of %d bytes: %+v %v, want one job and more", n.m.cfg.MaxListBytes, p, err)
	}
	for _, bad := range []string{`{"limit":0}`, `{"limit":1001}`, `[`} {
		if _, err := list(nil, bad); engine.AsError(err).Code != codes.InvalidArgument {
			t.Errorf("cron::list %s: %v, want invalid_argument", bad, err)
		}
	}
}

package streammodule_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/streamapi"
)

// A stream:join trigger whose worker left keeps denying its stream, and
// it shows: engine::triggers::overview and the registered-triggers
// listings list it as orphaned with the reason, and
// engine::triggers::release lets an operator end it.
func TestOrphanedJoinTriggerIsListedAndReleased(t *testing.T) {
	v := start(t, streammodule.Config{})
	deny := engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) { return []byte(`{"unauthorized":true}`), nil })
	if err := v.e.RegisterFunction("gate::deny", "", deny); err != nil {
		t.Fatal(err)
	}
	join := func(stream string) error {
		return v.m.Join(context.Background(), streamapi.Subscription{SubscriptionID: "x", StreamName: stream, GroupID: "g"})
	}
	bind := func(s *engine.Session, id, stream string) {
		t.Helper()
		cfg := json.RawMessage(`{"stream_name":"` + stream + `"}`)
		if err := s.RegisterTrigger(context.Background(), engine.Trigger{ID: id, Type: streammodule.TriggerJoin, FunctionID: "gate::deny", Config: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	overview := func() map[string]engine.TriggerStatus {
		t.Helper()
		var out struct {
			Triggers []engine.TriggerStatus `json:"triggers"`
		}
		if err := json.Unmarshal([]byte(v.must(t, engine.FnTriggersOverview, `{}`)), &out); err != nil {
			t.Fatal(err)
		}
		m := map[string]engine.TriggerStatus{}
		for _, ts := range out.Triggers {
			m[ts.ID] = ts
		}
		return m
	}

	owner := attach(t, v.e)
	bind(owner, "gate", "secret")
	owner.Close()
	poll.CheckFor(t, 5*time.Second, poll.Holds("the orphaned trigger in the overview", func() bool { return overview()["gate"].Status == "orphaned" }))
	got := overview()["gate"]
	if got.Type != streammodule.TriggerJoin || got.FunctionID != "gate::deny" || !strings.Contains(got.Reason, "disconnected") ||
		!strings.Contains(got.Reason, engine.FnTriggersRelease) {
		t.Errorf("overview row %+v: want the join trigger with a reason naming %s", got, engine.FnTriggersRelease)
	}
	var listed struct {
		Triggers []map[string]any `json:"registered_triggers"`
	}
	if err := json.Unmarshal([]byte(v.must(t, engine.FnRegisteredTriggersList, `{}`)), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.Triggers) != 1 || listed.Triggers[0]["id"] != "gate" || listed.Triggers[0]["status"] != "orphaned" || listed.Triggers[0]["reason"] == "" {
		t.Errorf("registered-triggers::list = %v, want the orphaned gate with status and reason", listed.Triggers)
	}
	if out := v.must(t, engine.FnRegisteredTriggersInfo, `{"trigger_id":"gate"}`); !strings.Contains(out, `"status":"orphaned"`) {
		t.Errorf("registered-triggers::info = %s, want status orphaned", out)
	}
	if join("secret") == nil {
		t.Fatal("an orphaned join trigger no longer guards its stream")
	}

	// Refusals change nothing: an unknown id, a live trigger, no id.
	live := attach(t, v.e)
	bind(live, "live", "other")
	for _, in := range []string{`{"trigger_id":"nope"}`, `{"trigger_id":"live"}`} {
		_, err := v.call(t, engine.FnTriggersRelease, in)
		wantCode(t, err, codes.TriggerNotFound)
	}
	_, err := v.call(t, engine.FnTriggersRelease, `{}`)
	wantCode(t, err, codes.InvalidArgument)
	if overview()["live"].Status != "active" || join("other") == nil || join("secret") == nil {
		t.Fatal("a refused release changed a trigger")
	}

	if out := v.must(t, engine.FnTriggersRelease, `{"trigger_id":"gate"}`); !strings.Contains(out, `"released":true`) {
		t.Errorf("release = %s", out)
	}
	if err := join("secret"); err != nil {
		t.Fatalf("join after the release: %v", err)
	}
	if _, ok := overview()["gate"]; ok {
		t.Error("a released trigger is still listed")
	}
	_, err = v.call(t, engine.FnTriggersRelease, `{"trigger_id":"gate"}`)
	wantCode(t, err, codes.TriggerNotFound)
}

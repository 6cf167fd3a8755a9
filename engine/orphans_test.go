package engine_test

import (
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// engine::triggers::release is for trusted callers: a connection under a
// listener policy is forbidden it unless its listener exposes it.
func TestReleaseIsForTrustedCallers(t *testing.T) {
	e := newEngine(t, engine.Config{})
	call := engine.Call{FunctionID: engine.FnTriggersRelease, Payload: []byte(`{"trigger_id":"gate"}`)}
	restricted, _ := granted(t, e, &engine.Access{ExposeFunctions: []engine.Filter{{Match: "api::*"}}}, `{}`)
	if _, err := restricted.Call(t.Context(), call); engine.AsError(err).Code != codes.Forbidden {
		t.Errorf("restricted connection: %v, want forbidden", err)
	}
	exposed, _ := granted(t, e, &engine.Access{ExposeFunctions: []engine.Filter{{Match: engine.FnTriggersRelease}}}, `{}`)
	trusted, err := e.Attach(engine.WorkerInfo{Name: "ops"}, newPeer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(trusted.Close)
	for name, s := range map[string]*engine.Session{"exposed": exposed, "trusted": trusted} {
		if _, err := s.Call(t.Context(), call); engine.AsError(err).Code != codes.TriggerNotFound {
			t.Errorf("%s connection: %v, want trigger_not_found (no orphan here)", name, err)
		}
	}
}

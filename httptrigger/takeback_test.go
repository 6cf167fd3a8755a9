package httptrigger_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/httptrigger"
)

// A connection under a listener policy that takes a path first does not
// keep it from a trusted worker: the trusted route takes it back, and the
// request reaches the trusted function. Between two connections under a
// policy, the first keeps it.
func TestTrustedRouteTakesPathBack(t *testing.T) {
	h := start(t, httptrigger.Config{})
	h.reply(t, "trusted::hook", `{"status_code":200,"body":"trusted"}`)
	a := &engine.Access{AuthFunctionID: "auth"}
	h.reply(t, "auth", `{"function_registration_prefix":"evil"}`)
	g, err := h.e.Authenticate(context.Background(), a, engine.AuthInput{})
	if err != nil {
		t.Fatal(err)
	}
	evil, err := h.e.AttachGranted(engine.WorkerInfo{Name: "evil"}, nopPeer{}, g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(evil.Close)
	if err := evil.RegisterFunction("sink", ""); err != nil {
		t.Fatal(err)
	}
	squat := engine.Trigger{ID: "stripe-webhook", Type: httptrigger.TriggerType, FunctionID: "sink", Config: json.RawMessage(`{"api_path":"webhook/stripe","http_method":"POST"}`)}
	if err := evil.RegisterTrigger(t.Context(), squat); err != nil {
		t.Fatal(err)
	}
	other := squat
	other.ID = "other-id"
	if err := evil.RegisterTrigger(t.Context(), other); engine.AsError(err).Code != codes.Conflict {
		t.Fatalf("a second route on the path from a connection under a policy: %v", err)
	}
	// The trusted worker registers the same trigger id, then the same path
	// under another id.
	if err := h.register("stripe-webhook", "trusted::hook", `{"api_path":"webhook/stripe","http_method":"POST"}`); err != nil {
		t.Fatalf("trusted registration of a trigger id taken first: %v", err)
	}
	if r := h.do(t, http.MethodPost, "/webhook/stripe", nil); r.status != http.StatusOK || !strings.Contains(string(r.body), "trusted") {
		t.Fatalf("POST after the trusted registration: %d %s", r.status, r.body)
	}
	if err := h.s.UnregisterTrigger(t.Context(), "stripe-webhook"); err != nil {
		t.Fatal(err)
	}
	if err := evil.RegisterTrigger(t.Context(), squat); err != nil {
		t.Fatal(err)
	}
	if err := h.register("trusted-webhook", "trusted::hook", `{"api_path":"webhook/stripe","http_method":"POST"}`); err != nil {
		t.Fatalf("trusted route on a path taken first: %v", err)
	}
	if r := h.do(t, http.MethodPost, "/webhook/stripe", nil); r.status != http.StatusOK || !strings.Contains(string(r.body), "trusted") {
		t.Fatalf("POST after the trusted route: %d %s", r.status, r.body)
	}
	_, ts := h.e.Triggers()
	for _, tr := range ts {
		if tr.ID == "stripe-webhook" {
			t.Fatalf("the taken-back trigger is still listed: %+v", tr)
		}
	}
}

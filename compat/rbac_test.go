package compat_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	trine "github.com/trinehq/trine/worker-sdk"
)

// rbacConfig is the engine's YAML: a public iii listener with iii's rbac
// block, beside the trusted one, as iii's own RBAC tests configure it.
const rbacConfig = `listeners:
  - protocol: iii
    addr: 127.0.0.1:0
    middleware_function_id: test::rbac-worker::middleware
    rbac:
      auth_function_id: test::rbac-worker::auth
      expose_functions:
        - match("test::ew::public::*")
        - metadata:
            ew_public: true
      on_function_registration_function_id: test::rbac-worker::on-function-reg
      on_trigger_registration_function_id: test::rbac-worker::on-trigger-reg
      on_trigger_type_registration_function_id: test::rbac-worker::on-trigger-type-reg
`

// TestIIINodeSDKRBAC runs compat/iii-node/rbac.mjs, the scenarios of iii's
// own RBAC worker tests, with the real iii-sdk against a listener
// configured as iii configures one. A Go worker on the trusted gRPC
// listener serves the auth function, the middleware, the hooks and the
// test functions.
func TestIIINodeSDKRBAC(t *testing.T) {
	node := nodeWithSDK(t)
	conf := filepath.Join(t.TempDir(), "trine.yaml")
	must(t, os.WriteFile(conf, []byte(rbacConfig), 0o600))
	a := startEngineWith(t, buildTrine(t), "--config", conf)
	grpcAddr, iiiAddr := a.grpc, a.iii
	m := regexp.MustCompile(`iii/1=(\S+)`).FindStringSubmatch(a.rest)
	if m == nil {
		t.Fatalf("no extra listener on the start line: %q", a.rest)
	}
	rbacAddr := m[1]

	var mu sync.Mutex
	var calls []string // what the policy functions saw, for the Node test to check
	note := func(s string) { mu.Lock(); calls = append(calls, s); mu.Unlock() }
	w := trine.RegisterWorker(grpcAddr, trine.WithName("go-rbac"))
	defer w.Close()
	must(t, w.RegisterFunction(t.Context(), "test::rbac-worker::auth", func(_ context.Context, p json.RawMessage) (any, error) {
		var in struct {
			Headers map[string]string `json:"headers"`
		}
		if err := json.Unmarshal(p, &in); err != nil {
			return nil, err
		}
		note("auth " + in.Headers["x-test-token"])
		switch in.Headers["x-test-token"] {
		case "":
			return map[string]any{"allowed_functions": []string{}, "forbidden_functions": []string{}, "allow_trigger_type_registration": false,
				"context": map[string]string{"role": "anonymous", "user_id": "anonymous"}}, nil
		case "valid-token":
			return map[string]any{"allowed_functions": []string{"test::ew::valid-token-echo"}, "forbidden_functions": []string{},
				"allow_trigger_type_registration": true, "context": map[string]string{"role": "admin", "user_id": "user-1"}}, nil
		case "restricted-token":
			return map[string]any{"allowed_functions": []string{}, "forbidden_functions": []string{"test::ew::public::echo"},
				"allow_trigger_type_registration": false, "context": map[string]string{"role": "restricted", "user_id": "user-2"}}, nil
		case "prefix-token":
			return map[string]any{"allowed_functions": []string{}, "forbidden_functions": []string{}, "allow_trigger_type_registration": true,
				"context": map[string]string{"role": "prefixed", "user_id": "user-prefix"}, "function_registration_prefix": "test-prefix"}, nil
		}
		return nil, errors.New("invalid token")
	}))
	must(t, w.RegisterFunction(t.Context(), "test::rbac-worker::middleware", func(ctx context.Context, p json.RawMessage) (any, error) {
		var in struct {
			FunctionID string         `json:"function_id"`
			Payload    map[string]any `json:"payload"`
			Context    map[string]any `json:"context"`
		}
		if err := json.Unmarshal(p, &in); err != nil {
			return nil, err
		}
		if in.Payload == nil {
			in.Payload = map[string]any{}
		}
		in.Payload["_intercepted"], in.Payload["_caller"] = true, in.Context["user_id"]
		b, _ := json.Marshal(in.Payload)
		return w.Trigger(ctx, in.FunctionID, json.RawMessage(b))
	}))
	hook := func(kind, field, deny string) func(context.Context, json.RawMessage) (any, error) {
		return func(_ context.Context, p json.RawMessage) (any, error) {
			var in map[string]any
			if err := json.Unmarshal(p, &in); err != nil {
				return nil, err
			}
			id, _ := in[field].(string)
			ctx, _ := in["context"].(map[string]any)
			note(kind + " " + id + " " + toString(ctx["user_id"]))
			if strings.HasPrefix(id, deny) {
				return nil, errors.New("denied " + kind)
			}
			return map[string]any{}, nil
		}
	}
	must(t, w.RegisterFunction(t.Context(), "test::rbac-worker::on-function-reg", hook("function", "function_id", "denied::")))
	must(t, w.RegisterFunction(t.Context(), "test::rbac-worker::on-trigger-reg", hook("trigger", "function_id", "denied-trig::")))
	must(t, w.RegisterFunction(t.Context(), "test::rbac-worker::on-trigger-type-reg", hook("trigger-type", "trigger_type_id", "denied-tt::")))
	must(t, w.RegisterFunction(t.Context(), "test::rbac-worker::calls", func(context.Context, json.RawMessage) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		out := append([]string{}, calls...)
		calls = nil
		return out, nil
	}))
	for _, id := range []string{"test::ew::public::echo", "test::ew::valid-token-echo", "test::ew::private"} {
		must(t, w.RegisterFunction(t.Context(), id, func(_ context.Context, p json.RawMessage) (any, error) {
			return map[string]any{"echoed": p, "function": id}, nil
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	must(t, w.Connect(ctx))

	cmd := exec.CommandContext(ctx, node, "--test", "--test-concurrency=1", "--test-force-exit", "rbac.mjs")
	cmd.Dir = "iii-node"
	cmd.Env = append(os.Environ(), "III_URL=ws://"+iiiAddr, "III_RBAC_URL=ws://"+rbacAddr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test rbac.mjs: %v\n%s", err, out)
	}
	t.Logf("node --test rbac.mjs:\n%s", lastLines(string(out), 12))
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

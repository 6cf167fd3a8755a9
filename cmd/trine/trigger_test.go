package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// decodeFailure parses the one-line {"code","message"} that a failed
// `trine trigger` prints on stderr.
func decodeFailure(t *testing.T, r result) failure {
	t.Helper()
	checkOneLine(t, "stderr", r.stderr)
	var f failure
	dec := json.NewDecoder(strings.NewReader(r.stderr))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || f.Code == "" || f.Message == "" {
		t.Errorf("stderr %q is not {\"code\",\"message\"}: %v", r.stderr, err)
	}
	if r.stdout != "" {
		t.Errorf("stdout of a failed call = %q, want nothing", r.stdout)
	}
	return f
}

func TestTrigger(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t)...)

	t.Run("HealthCheck", func(t *testing.T) {
		t.Parallel()
		r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::health::check")
		var h struct {
			Status  string `json:"status"`
			Version string `json:"version"`
		}
		if r.code != 0 || r.stderr != "" || !strings.HasSuffix(r.stdout, "}\n") || json.Unmarshal([]byte(r.stdout), &h) != nil {
			t.Fatalf("trigger engine::health::check = exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if h.Status != "ok" || h.Version != "dev" {
			t.Errorf("health = %+v, want status ok and version dev", h)
		}
	})
	t.Run("EngineFromEnv", func(t *testing.T) {
		t.Parallel()
		r := runTrine(t, testEnv("TRINE_ENGINE="+e.grpc), "", "trigger", "engine::health::check")
		if r.code != 0 || !strings.Contains(r.stdout, `"status":"ok"`) {
			t.Errorf("trigger with TRINE_ENGINE = exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("FlagBeatsEnv", func(t *testing.T) {
		t.Parallel()
		r := runTrine(t, testEnv("TRINE_ENGINE="+closedAddr(t)), "", "trigger", "--engine", e.grpc, "engine::health::check")
		if r.code != 0 {
			t.Errorf("trigger --engine with a dead TRINE_ENGINE = exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("FlagsAfterFunctionID", func(t *testing.T) {
		t.Parallel()
		r := runTrine(t, testEnv("TRINE_ENGINE="+closedAddr(t)), "", "trigger", "engine::functions::list", `{"prefix":"engine::health"}`, "--engine", e.grpc, "--timeout=5s")
		if r.code != 0 || !strings.Contains(r.stdout, "engine::health::check") {
			t.Errorf("flags after FUNCTION_ID and JSON: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		r = runTrine(t, testEnv(), "", "trigger", "engine::health::check", "--engine", e.grpc)
		if r.code != 0 || !strings.Contains(r.stdout, `"status":"ok"`) {
			t.Errorf("a flag after FUNCTION_ID: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		// Not flags: a negative number, and anything after --.
		r = runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "test::nobody", "-1")
		if r.code != 1 || decodeFailure(t, r).Code != "function_not_found" {
			t.Errorf("a negative payload: exit %d, stderr %q", r.code, r.stderr)
		}
		r = runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "--", "test::nobody", "-1")
		if r.code != 1 || decodeFailure(t, r).Code != "function_not_found" {
			t.Errorf("arguments after --: exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("PayloadArgument", func(t *testing.T) {
		t.Parallel()
		r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::functions::list", `{"prefix":"engine::health"}`)
		want := `{"functions":[{"function_id":"engine::health::check",`
		if r.code != 0 || !strings.HasPrefix(r.stdout, want) || strings.Count(r.stdout, "function_id") != 1 {
			t.Errorf("functions::list with a prefix = exit %d, stdout %q, stderr %q; want only %s", r.code, r.stdout, r.stderr, want)
		}
	})
	t.Run("PayloadFromStdin", func(t *testing.T) {
		t.Parallel()
		r := runTrine(t, testEnv(), "\n{\"prefix\": \"engine::workers::l\"}\n", "trigger", "--engine", e.grpc, "engine::functions::list", "-")
		if r.code != 0 || !strings.Contains(r.stdout, `"engine::workers::list"`) || strings.Count(r.stdout, "function_id") != 1 {
			t.Errorf("functions::list with a prefix from stdin = exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("Void", func(t *testing.T) {
		t.Parallel()
		r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "--void", "engine::health::check")
		if r.code != 0 || r.stdout != "" || r.stderr != "" {
			t.Errorf("void trigger = exit %d, stdout %q, stderr %q; want 0 and no output", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("UnknownFunction", func(t *testing.T) {
		t.Parallel()
		r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "no::such::function", `{"a":1}`)
		f := decodeFailure(t, r)
		if r.code != 1 || f.Code != "function_not_found" || !strings.Contains(f.Message, "no::such::function") {
			t.Errorf("unknown function = exit %d, %+v; want 1 and function_not_found naming it", r.code, f)
		}
	})
	t.Run("InvalidArgumentFromEngine", func(t *testing.T) {
		t.Parallel()
		r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::functions::list", `{"prefix":42}`)
		if f := decodeFailure(t, r); r.code != 1 || f.Code != "invalid_argument" {
			t.Errorf("bad payload = exit %d, %+v; want 1 and invalid_argument", r.code, f)
		}
	})
}

func TestTriggerEngineDown(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	r := runTrine(t, testEnv(), "", "trigger", "--engine", addr, "engine::health::check")
	f := decodeFailure(t, r)
	if r.code != 1 || f.Code != "unavailable" || !strings.Contains(f.Message, "engine at "+addr+" is not reachable") {
		t.Errorf("trigger with no engine = exit %d, %+v; want 1, unavailable and a message naming %s", r.code, f, addr)
	}
}

func TestTriggerUsageErrors(t *testing.T) {
	t.Parallel()
	// A dead engine address: a usage error must be found before dialing,
	// which would fail with exit code 1.
	engine := closedAddr(t)
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"InvalidJSON", []string{"fn", `{"a":`}, "", "not valid JSON"},
		{"NotJSON", []string{"fn", "hello"}, "", "not valid JSON"},
		{"TwoValues", []string{"fn", "1 2"}, "", "not valid JSON"},
		{"InvalidStdin", []string{"fn", "-"}, "{nope}", "not valid JSON"},
		{"EmptyStdin", []string{"fn", "-"}, "", "not valid JSON"},
		{"MissingID", nil, "", "missing FUNCTION_ID"},
		{"TooManyArgs", []string{"fn", "{}", "extra"}, "", "too many arguments"},
		{"UnknownFlag", []string{"--bogus", "fn"}, "", "flag provided but not defined"},
		{"BadTimeout", []string{"--timeout", "-1s", "fn"}, "", "--timeout"},
		{"EmptyEngine", []string{"--engine=", "fn"}, "", "--engine must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runTrine(t, testEnv(), tt.stdin, append([]string{"trigger", "--engine", engine}, tt.args...)...)
			if r.code != 2 || !strings.HasPrefix(r.stderr, "trine trigger: ") || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("trigger %q = exit %d, stderr %q; want 2 and %q", tt.args, r.code, r.stderr, tt.want)
			}
			checkOneLine(t, "stderr", r.stderr)
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
}

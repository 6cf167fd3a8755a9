package statemodule_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/statemodule"
	"github.com/trinehq/trine/streammodule/contracts"
	"github.com/trinehq/trine/streammodule/store"
)

// A scope's new version is checked against the values it holds: refused
// with the keys that fail, or passed once migrate converted them.
func TestScopeEvolveChecksValues(t *testing.T) {
	v := start(t, statemodule.Config{})
	def := func(version, schema, extra string) (string, error) {
		return v.call("state::define", `{"scope":"users","version":`+version+`,"compatibility":"NONE","item_schema":`+schema+extra+`}`)
	}
	v.must(t, "state::define", `{"scope":"users","version":1,"item_schema":{"type":"object"}}`)
	v.must(t, "state::set", `{"scope":"users","key":"ann","value":{"age":"41"}}`)
	v.must(t, "state::set", `{"scope":"users","key":"bob","value":{"age":7}}`)
	ageInt := `{"type":"object","properties":{"age":{"type":"integer"}},"required":["age"]}`
	_, err := def("2", ageInt, "")
	if e := engine.AsError(err); err == nil || e.Code != codes.Conflict || !strings.Contains(err.Error(), `1 stored items fail version 2: {"key":"ann","scope":"users"}; first: /age: expected integer, got string`) {
		t.Fatalf("got %v", err)
	}
	if err := v.e.RegisterFunction("users::migrate", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		var in struct {
			Key  string `json:"key"`
			Data struct {
				Age json.Number `json:"age"`
			} `json:"data"`
		}
		if err := json.Unmarshal(c.Payload, &in); err != nil {
			return nil, err
		}
		return []byte(`{"age":` + in.Data.Age.String() + `}`), nil
	})); err != nil {
		t.Fatal(err)
	}
	out, err := def("2", ageInt, `,"migrate":"users::migrate"`)
	if err != nil || !strings.Contains(out, `"migrated":1`) {
		t.Fatalf("migrate: %s, %v", out, err)
	}
	if got := v.must(t, "state::get", `{"scope":"users","key":"ann"}`); got != `{"age":41}` {
		t.Fatalf("ann: %s", got)
	}
}

// A state::set checked against the old version alone and held before its
// commit is waited for: the re-check then reads its value and refuses
// the version it breaks.
func TestScopeEvolveWaitsForWritesCheckedBefore(t *testing.T) {
	set := contracts.NewMemorySet(contracts.State)
	v := start(t, statemodule.Config{Contracts: set})
	v.must(t, "state::define", `{"scope":"users","version":1,"item_schema":{"type":"object"}}`)
	checked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	statemodule.BeforeCommit(v.m, func(k store.Key) {
		if k.Item == "late" {
			once.Do(func() { close(checked); <-release })
		}
	})
	wrote := make(chan error, 1)
	go func() {
		_, err := v.call("state::set", `{"scope":"users","key":"late","value":{"age":"old"}}`)
		wrote <- err
	}()
	<-checked
	defined := make(chan error, 1)
	go func() {
		_, err := v.call("state::define", `{"scope":"users","version":2,"compatibility":"NONE","item_schema":{"type":"object","properties":{"age":{"type":"integer"}}}}`)
		defined <- err
	}()
	var err error
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err = <-defined:
			close(release)
			break wait
		case <-tick.C:
			if set.Draining() > 0 {
				close(release)
				err = <-defined
				break wait
			}
		case <-timeout.C:
			close(release)
			t.Fatal("the definition neither ended nor waited for the write within 20s")
		}
	}
	if werr := <-wrote; werr != nil {
		t.Fatal(werr)
	}
	if e := engine.AsError(err); err == nil || e.Code != codes.Conflict || !strings.Contains(err.Error(), `{"key":"late","scope":"users"}`) {
		t.Fatalf("define over a value that breaks it: %v", err)
	}
}

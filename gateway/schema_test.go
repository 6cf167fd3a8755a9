package gateway_test

import (
	"testing"
	"time"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/streamapi"
)

// The contract versions a subscription is told, by sync and schema
// frames, end with the newest one the gateway knows, however a snapshot
// read and a definition's notice cross: a resync read answered before a
// definition, a read shared with an earlier join, a resume with since.

// versionsTold reads c's frames for d and returns the sync and schema
// frames' kinds and versions, in order.
func versionsTold(t *testing.T, c *client, d time.Duration) (kinds []string, versions []uint64) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case raw := <-c.frames:
			if f := parseFrame(t, raw); f.kind() == "sync" || f.kind() == "schema" {
				kinds, versions = append(kinds, f.kind()), append(versions, contractVersion(t, f))
			}
		case <-deadline:
			return kinds, versions
		}
	}
}

// readSchema reads c's frames up to a schema frame telling version.
func readSchema(t *testing.T, c *client, version uint64) {
	t.Helper()
	for {
		if f := c.read(); f.kind() == "schema" && contractVersion(t, f) == version {
			return
		}
	}
}

func defineTodos(t *testing.T, s *stack, version int) {
	t.Helper()
	s.call(t, "stream::define", map[string]any{"stream_name": "todos", "version": version, "item_schema": map[string]any{"type": "object"}})
}

// A resync whose snapshot was read before a definition and reaches the
// gateway after its notice: the notice waits for the resync, and follows
// its sync frame, which tells the older version it was read under.
func TestSchemaAfterAStaleResync(t *testing.T) {
	cb := &countingBackend{noHistory: true}
	s := newStack(t, gateway.Config{Backend: cb}, streammodule.Config{})
	cb.after = func(res *streamapi.SnapshotResult) {
		switch cb.reads.Load() {
		case 1: // a gap after the first snapshot: the subscription resyncs
			s.set(t, "todos", "g", "b", map[string]any{"title": "y"})
			res.Seq--
		case 2: // the resync's read, answered before version 2's notice
			defineTodos(t, s, 2)
			time.Sleep(300 * time.Millisecond)
		}
	}

	defineTodos(t, s, 1)
	s.set(t, "todos", "g", "a", map[string]any{"title": "x"})
	c := s.dial(t, "/", nil)
	c.send(join("s1", "todos", "g"))
	kinds, versions := versionsTold(t, c, 2*time.Second)
	must(t, len(kinds) == 3 && kinds[0] == "sync" && kinds[1] == "sync" && kinds[2] == "schema" &&
		versions[0] == 1 && versions[1] == 1 && versions[2] == 2,
		"told %v %v; want sync 1, the resync's sync 1, then schema 2", kinds, versions)
}

// A join that shares a snapshot read taken before a definition is told
// the definition's version after its sync, although it was not subscribed
// when the notice came.
func TestSchemaAfterASharedStaleRead(t *testing.T) {
	s := newStack(t, gateway.Config{SnapshotCoalesce: time.Minute}, streammodule.Config{})
	defineTodos(t, s, 1)
	s.set(t, "todos", "g", "a", map[string]any{"title": "x"})
	a := s.dial(t, "/", nil)
	a.send(join("s1", "todos", "g"))
	f := a.read()
	must(t, f.kind() == "sync" && contractVersion(t, f) == 1, "a: %s", f.Raw)
	defineTodos(t, s, 2)
	f = a.read()
	must(t, f.kind() == "schema" && contractVersion(t, f) == 2, "a: %s", f.Raw)

	b := s.dial(t, "/", nil)
	b.send(join("s1", "todos", "g"))
	kinds, versions := versionsTold(t, b, time.Second)
	must(t, len(kinds) == 2 && kinds[0] == "sync" && versions[0] == 1 && kinds[1] == "schema" && versions[1] == 2,
		"b told %v %v; want the shared read's sync 1, then schema 2", kinds, versions)
}

// A subscription resumed with since (no sync frame) after a definition
// this gateway saw is told the new version after its catch-up.
func TestSchemaAfterResumeWithSince(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	kinds, versions := resumeAfterDefinition(t, s)
	must(t, len(kinds) == 1 && kinds[0] == "schema" && versions[0] == 2, "told %v %v after the catch-up; want schema 2", kinds, versions)
}

// The streams a gateway remembers versions of are bounded, in count and
// in bytes of their names (KnownContracts, KnownContractBytes): past either, a resume is told nothing, and the
// notices still reach the subscriptions.
func TestKnownContractsAreBounded(t *testing.T) {
	for name, cfg := range map[string]gateway.Config{
		"streams": {KnownContracts: 1},
		"bytes":   {KnownContractBytes: len("other")},
	} {
		t.Run(name, func(t *testing.T) { knownContractsBounded(t, cfg) })
	}
}

func knownContractsBounded(t *testing.T, cfg gateway.Config) {
	s := newStack(t, cfg, streammodule.Config{})
	// "other" takes the one place: a watcher's schema frame for its
	// version 2 shows the gateway has seen both its notices.
	defineOther := func(v int) {
		s.call(t, "stream::define", map[string]any{"stream_name": "other", "version": v, "item_schema": map[string]any{"type": "object"}})
	}
	defineOther(1)
	w := s.dial(t, "/", nil)
	w.send(join("w", "other", "g"))
	must(t, w.read().kind() == "sync", "sync")
	defineOther(2)
	readSchema(t, w, 2)
	kinds, versions := resumeAfterDefinition(t, s)
	must(t, len(kinds) == 0, "told %v %v after the catch-up; want nothing past the bound", kinds, versions)
}

// resumeAfterDefinition subscribes to todos at version 1, leaves, waits
// for s's gateway to see version 2 defined, resumes with since, and
// returns what the resumed subscription is told after its catch-up.
func resumeAfterDefinition(t *testing.T, s *stack) (kinds []string, versions []uint64) {
	t.Helper()
	defineTodos(t, s, 1)
	s.set(t, "todos", "g", "a", map[string]any{"title": "x"})
	c := s.dial(t, "/", nil)
	c.send(join("s1", "todos", "g"))
	f := c.read()
	must(t, f.kind() == "sync" && f.Seq == 1, "sync: %s", f.Raw)
	c.c.CloseNow()
	// A watcher on the same gateway: its schema frame shows the gateway
	// has seen version 2's notice (and version 1's, on the same subject
	// before it) before the resume.
	watcher := s.dial(t, "/", nil)
	watcher.send(join("w", "todos", "g"))
	must(t, watcher.read().kind() == "sync", "watcher's sync")
	defineTodos(t, s, 2)
	readSchema(t, watcher, 2)
	s.set(t, "todos", "g", "b", map[string]any{"title": "y"})

	c = s.dial(t, "/", nil)
	c.send(join("s1", "todos", "g", "since", 1))
	f = c.read()
	must(t, f.kind() == "create" && f.Seq == 2, "the event after since: %s", f.Raw)
	return versionsTold(t, c, time.Second)
}

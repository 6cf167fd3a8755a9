package store_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/storetest"
)

func openFile(t *testing.T, dir string, opts store.FileOptions) *store.File {
	t.Helper()
	f, err := store.OpenFile(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFile(t *testing.T) {
	dirs := map[store.Store]string{}
	storetest.Run(t, storetest.Adapter{
		New: func(t *testing.T, opts store.Options) store.Store {
			dir := t.TempDir()
			f := openFile(t, dir, store.FileOptions{Options: opts})
			dirs[f] = dir
			return f
		},
		Reopen: func(t *testing.T, s store.Store, opts store.Options) store.Store {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			f := openFile(t, dirs[s], store.FileOptions{Options: opts})
			dirs[f] = dirs[s]
			return f
		},
	})
}

var ctx = context.Background()

func setTo(v string) store.Mutator {
	return func(json.RawMessage, bool) (json.RawMessage, error) { return json.RawMessage(v), nil }
}

func TestFileTornTail(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, dir, store.FileOptions{})
	k := store.Key{Stream: "s", Group: "g", Item: "i"}
	if _, err := f.Put(ctx, k, store.Cond{}, setTo(`"kept"`)); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: copy the files as they are now, before Close
	// compacts anything, and add half a record to the journal.
	crashed := t.TempDir()
	for _, name := range []string{"snapshot", "journal"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "journal" {
			if len(data) == 0 {
				t.Fatal("the acknowledged write is not in the journal")
			}
			data = append(data, data[:len(data)/2]...)
		}
		if err := os.WriteFile(filepath.Join(crashed, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	g := openFile(t, crashed, store.FileOptions{})
	defer g.Close()
	it, seq, err := g.Get(ctx, k)
	if err != nil || string(it.Value) != `"kept"` || seq != 1 {
		t.Fatalf("after a torn tail: %+v at %d, %v", it, seq, err)
	}
	if ch, err := g.Put(ctx, k, store.Cond{}, setTo(`"next"`)); err != nil || ch.Seq != 2 {
		t.Fatalf("write after recovery: %+v %v", ch, err)
	}
}

func TestFileExclusive(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, dir, store.FileOptions{})
	defer f.Close()
	if g, err := store.OpenFile(dir, store.FileOptions{}); err == nil {
		g.Close()
		t.Fatal("a second OpenFile of the same directory succeeded")
	}
}

func TestFileCompaction(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, dir, store.FileOptions{CompactBytes: 4 << 10})
	k := store.Key{Stream: "s", Group: "g"}
	for i := range 500 {
		k.Item = strconv.Itoa(i % 7)
		if _, err := f.Put(ctx, k, store.Cond{}, setTo(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(filepath.Join(dir, "journal"))
	if err != nil || st.Size() >= 8<<10 {
		t.Fatalf("journal not compacted: %v %v", st.Size(), err)
	}
	f.Close()
	f = openFile(t, dir, store.FileOptions{})
	defer f.Close()
	p, err := f.List(ctx, "s", "g", "", 0)
	if err != nil || len(p.Items) != 7 || p.Seq != 500 {
		t.Fatalf("after compaction and reopen: %+v %v", p, err)
	}
	for _, it := range p.Items {
		n, _ := strconv.Atoi(it.ID)
		if want := 499 - (499-n)%7; string(it.Value) != strconv.Itoa(want) {
			t.Fatalf("item %s = %s, want %d", it.ID, it.Value, want)
		}
	}
}

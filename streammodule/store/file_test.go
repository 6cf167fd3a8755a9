package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	crashed := crashCopy(t, dir, func(j []byte) []byte {
		if len(j) == 0 {
			t.Fatal("the acknowledged write is not in the journal")
		}
		return append(j, j[:len(j)/2]...)
	})
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
	p, err := f.List(ctx, "s", "g", store.Range{})
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

// crashCopy copies dir's snapshot and journal as they are now, as a crash
// would leave them, into a new directory.
func crashCopy(t *testing.T, dir string, mangle func(journal []byte) []byte) string {
	t.Helper()
	crashed := t.TempDir()
	for _, name := range []string{"snapshot", "journal"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "journal" {
			data = mangle(data)
		}
		if err := os.WriteFile(filepath.Join(crashed, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return crashed
}

// A flipped byte in the middle of the journal must not lose the
// acknowledged writes after it in silence: the store refuses to open,
// naming the file and the offset, and leaves the evidence alone. Repair
// moves the damaged journal aside (never deleting it) and keeps every
// record it can read.
func TestFileCorruptJournal(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, dir, store.FileOptions{})
	for i := range 100 {
		k := store.Key{Stream: "s", Group: "g", Item: strconv.Itoa(i)}
		if _, err := f.Put(ctx, k, store.Cond{}, setTo(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	var flipped int
	crashed := crashCopy(t, dir, func(j []byte) []byte {
		flipped = len(j) / 2
		j[flipped] ^= 0xFF
		return j
	})
	f.Close()
	before, _ := os.ReadFile(filepath.Join(crashed, "journal"))

	_, err := store.OpenFile(crashed, store.FileOptions{})
	var ce *store.CorruptError
	if !errors.As(err, &ce) || ce.Path != filepath.Join(crashed, "journal") || ce.Offset > int64(flipped) || ce.Offset < int64(flipped)-64 {
		t.Fatalf("open of a corrupt journal: %v; want a CorruptError at about offset %d", err, flipped)
	}
	if after, _ := os.ReadFile(filepath.Join(crashed, "journal")); !bytes.Equal(before, after) {
		t.Fatal("the failed open changed the journal")
	}
	rep, err := store.Verify(crashed)
	if err != nil || len(rep.Damaged) != 1 || rep.Records != 99 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	rep, err = store.Repair(crashed)
	if err != nil || rep.MovedAside == "" {
		t.Fatalf("repair: %+v, %v", rep, err)
	}
	if aside, _ := os.ReadFile(rep.MovedAside); !bytes.Equal(aside, before) {
		t.Fatal("the damaged journal was not kept as it was")
	}
	g := openFile(t, crashed, store.FileOptions{})
	defer g.Close()
	p, err := g.List(ctx, "s", "g", store.Range{})
	if err != nil || len(p.Items) != 99 || p.Seq != 100 {
		t.Fatalf("after repair: %d items at seq %d, %v; want 99 (one record was damaged) at 100", len(p.Items), p.Seq, err)
	}
}

// A torn tail (the last record partial) is dropped, and logged with its
// offset and size.
func TestFileTornTailLogged(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, dir, store.FileOptions{})
	for i := range 3 {
		if _, err := f.Put(ctx, store.Key{Stream: "s", Group: "g", Item: strconv.Itoa(i)}, store.Cond{}, setTo("1")); err != nil {
			t.Fatal(err)
		}
	}
	var size int
	crashed := crashCopy(t, dir, func(j []byte) []byte { size = len(j); return append(j, j[:len(j)/3-5]...) })
	f.Close()
	var logs bytes.Buffer
	g := openFile(t, crashed, store.FileOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer g.Close()
	if p, _ := g.List(ctx, "s", "g", store.Range{}); len(p.Items) != 3 {
		t.Fatalf("%d items after a torn tail", len(p.Items))
	}
	if !strings.Contains(logs.String(), "torn tail") || !strings.Contains(logs.String(), "offset="+strconv.Itoa(size)) {
		t.Fatalf("log: %s", logs.String())
	}
}

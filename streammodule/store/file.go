package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// DefaultCompactBytes is the journal size at which the file adapter writes
// a new snapshot and starts an empty journal.
const DefaultCompactBytes = 64 << 20

// FileOptions configure the file adapter.
type FileOptions struct {
	Options
	// CompactBytes is the journal size that triggers a snapshot; zero means
	// DefaultCompactBytes.
	CompactBytes int64
	// Logger receives recovery notices (a torn tail dropped). Default:
	// discard.
	Logger *slog.Logger
}

// File is the durable single-node adapter: the in-memory state of Memory
// plus a write-ahead journal in a directory. A write returns only after its
// record is fsynced; writes that arrive while a sync runs share the next
// one (group commit). Open replays the snapshot and the journal, drops a
// torn tail left by a crash, and compacts both into a fresh snapshot.
type File struct {
	*Memory
	j *fileJournal
}

const (
	snapshotName = "snapshot"
	journalName  = "journal"
	lockName     = "LOCK"
)

// OpenFile opens (creating it if needed) the store in dir. Only one process
// may hold a directory open.
func OpenFile(dir string, opts FileOptions) (*File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("store: %s is in use by another process: %w", dir, err)
	}
	m := NewMemory(opts.Options)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	j := &fileJournal{dir: dir, lock: lock, m: m, onCommit: opts.OnCommit, log: log,
		compactAt: opts.CompactBytes, open: newBatch(),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	if j.compactAt <= 0 {
		j.compactAt = DefaultCompactBytes
	}
	if err := j.load(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := j.compact(); err != nil {
		lock.Close()
		return nil, err
	}
	m.j = j
	go j.run()
	return &File{Memory: m, j: j}, nil
}

// Close flushes pending writes, stops the journal and releases the
// directory. Later calls fail with ErrClosed.
func (f *File) Close() error {
	if f.Memory.closed.Swap(true) {
		return nil
	}
	close(f.j.stop)
	<-f.j.stopped
	err := f.j.f.Close()
	if lerr := f.j.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

type batch struct {
	buf     []byte
	changes []Change
	done    chan struct{}
	err     error
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

func (b *batch) wait() error {
	<-b.done
	return b.err
}

type fileJournal struct {
	dir       string
	lock      *os.File
	m         *Memory
	onCommit  func(Change)
	log       *slog.Logger
	compactAt int64

	f    *os.File // owned by run after Open
	size int64    // journal bytes, owned by run

	mu       sync.Mutex
	open     *batch // collecting the next sync
	inflight *batch // being synced, or nil
	err      error  // sticky: a failed sync or a stopped journal

	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

func (j *fileJournal) append(c Change, emitted bool) func() error {
	j.mu.Lock()
	if j.err != nil {
		err := j.err
		j.mu.Unlock()
		return func() error { return err }
	}
	b := j.open
	b.buf = appendRecord(b.buf, changeRecord(c, emitted))
	b.changes = append(b.changes, c)
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return b.wait
}

func (j *fileJournal) barrier() func() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.open.changes) > 0 {
		return j.open.wait
	}
	if j.inflight != nil {
		return j.inflight.wait
	}
	return nil
}

func (j *fileJournal) failed() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// run writes and syncs batches until stop, then flushes the last one.
func (j *fileJournal) run() {
	defer close(j.stopped)
	for {
		stopping := false
		select {
		case <-j.kick:
		case <-j.stop:
			stopping = true
		}
		j.mu.Lock()
		b := j.open
		j.open = newBatch()
		j.inflight = b
		if stopping && j.err == nil {
			j.err = ErrClosed
		}
		j.mu.Unlock()
		j.sync(b)
		if stopping {
			return
		}
		if j.size >= j.compactAt {
			if err := j.compact(); err != nil {
				j.fail(err)
			}
		}
	}
}

func (j *fileJournal) sync(b *batch) {
	if len(b.changes) > 0 {
		err := j.failed()
		if err == nil || errors.Is(err, ErrClosed) {
			err = j.write(b.buf)
		}
		if err != nil && !errors.Is(err, ErrClosed) {
			j.fail(err)
		}
		if err == nil {
			for _, c := range b.changes {
				if j.onCommit != nil {
					j.onCommit(c)
				}
			}
		}
		b.err = err
	}
	j.mu.Lock()
	j.inflight = nil
	j.mu.Unlock()
	close(b.done)
}

func (j *fileJournal) write(buf []byte) error {
	if _, err := j.f.Write(buf); err != nil {
		return fmt.Errorf("store: journal write: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("store: journal sync: %w", err)
	}
	j.size += int64(len(buf))
	return nil
}

// fail makes every later write fail with err: the journal no longer matches
// memory, so the store stops rather than lose writes silently.
func (j *fileJournal) fail(err error) {
	j.mu.Lock()
	if j.err == nil || errors.Is(j.err, ErrClosed) {
		j.err = err
	}
	j.mu.Unlock()
}

// load reads the snapshot, then replays the journal. A torn tail (the
// last record cut short by a crash: its write was never acknowledged) is
// dropped and logged; unreadable records with readable ones after them
// refuse the open with a CorruptError, and nothing is changed.
func (j *fileJournal) load() error {
	snapPath := filepath.Join(j.dir, snapshotName)
	snap, err := os.ReadFile(snapPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	ss := scan(snap)
	if len(ss.damaged) > 0 || ss.torn != nil {
		d := append(ss.damaged, Span{})[0]
		if len(ss.damaged) == 0 {
			d = *ss.torn // a snapshot is written whole and renamed: never torn
		}
		return &CorruptError{Path: snapPath, Offset: d.Offset, Length: d.Length}
	}
	for _, r := range ss.records {
		g := j.m.group(r.stream, r.group, true)
		switch r.kind {
		case recGroup:
			g.seq = r.seq
		case recPut:
			g.items[r.item] = entry{value: r.value, seq: r.seq}
		}
	}
	jpath := filepath.Join(j.dir, journalName)
	jf, err := os.OpenFile(jpath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	data, err := io.ReadAll(jf)
	if err != nil {
		jf.Close()
		return fmt.Errorf("store: %w", err)
	}
	js := scan(data)
	if len(js.damaged) > 0 {
		jf.Close()
		return &CorruptError{Path: jpath, Offset: js.damaged[0].Offset, Length: js.damaged[0].Length}
	}
	j.f = jf
	if t := js.torn; t != nil {
		j.log.Warn("store: journal torn tail dropped (a write interrupted by a crash, never acknowledged)",
			"path", jpath, "offset", t.Offset, "bytes", t.Length, "records_kept", len(js.records))
	}
	for _, r := range js.records {
		g := j.m.group(r.stream, r.group, true)
		if r.seq <= g.seq {
			continue // already in the snapshot
		}
		switch r.kind {
		case recPut:
			g.items[r.item] = entry{value: r.value, seq: r.seq}
		case recDel:
			delete(g.items, r.item)
		}
		g.seq = r.seq
	}
	return nil
}

// compact writes every group to a new snapshot and empties the journal. It
// runs at Open and on the journal goroutine between batches. Changes applied
// to memory but not yet journaled may land in the snapshot too; replay skips
// their journal records by sequence.
func (j *fileJournal) compact() error {
	var buf []byte
	j.m.each(func(stream, id string, g *group) {
		buf = appendRecord(buf, record{kind: recGroup, seq: g.seq, stream: stream, group: id})
		for item, e := range g.items {
			buf = appendRecord(buf, record{kind: recPut, seq: e.seq, stream: stream, group: id, item: item, value: e.value})
		}
	})
	tmp := filepath.Join(j.dir, snapshotName+".tmp")
	if err := writeSync(tmp, buf); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(j.dir, snapshotName)); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		return err
	}
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if _, err := j.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	j.size = 0
	return nil
}

func writeSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Span is a byte range of a file.
type Span struct {
	Offset, Length int64
}

// scanned is a file's readable records and the spans that are not.
type scanned struct {
	records []record
	damaged []Span // unreadable bytes with readable records after them
	torn    *Span  // unreadable bytes at the end: an interrupted last write
}

// scan reads every record of data. An unreadable frame is damage when a
// readable frame starts somewhere after it (found byte by byte, as the
// damage may have corrupted its length), and a torn tail when none does.
func scan(data []byte) scanned {
	var s scanned
	for i := 0; i < len(data); {
		r, n, err := nextRecord(data[i:])
		if err == nil {
			s.records = append(s.records, r)
			i += n
			continue
		}
		next := -1
		for j := i + 1; j+frameHeader <= len(data); j++ {
			if _, _, err := nextRecord(data[j:]); err == nil {
				next = j
				break
			}
		}
		if next < 0 {
			s.torn = &Span{int64(i), int64(len(data) - i)}
			break
		}
		s.damaged = append(s.damaged, Span{int64(i), int64(next - i)})
		i = next
	}
	return s
}

// CorruptError reports records that cannot be read before the end of a
// file, so that acknowledged writes after them would be lost: the store
// refuses to open rather than drop them.
type CorruptError struct {
	Path   string
	Offset int64 // of the first unreadable byte
	Length int64
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("store: %s is corrupt at offset %d (%d unreadable bytes, readable records after them); refusing to start so that nothing more is lost: run `trine store verify` to see the damage and `trine store repair` to move the file aside and keep every readable record", e.Path, e.Offset, e.Length)
}

// Report is what Verify and Repair found.
type Report struct {
	// Records counts the readable records of the snapshot and journal.
	Records int
	// Damaged lists unreadable spans with readable records after them,
	// and in which file.
	Damaged []FileSpan
	// TornTail is an unreadable end of the journal (an interrupted write,
	// never acknowledged), if any.
	TornTail *Span
	// MovedAside is where Repair moved the damaged file.
	MovedAside string
}

// FileSpan is a span of one file.
type FileSpan struct {
	Path string
	Span
}

// Verify reads the store in dir without changing it.
func Verify(dir string) (Report, error) {
	var rep Report
	for _, name := range []string{snapshotName, journalName} {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("store: %w", err)
		}
		s := scan(data)
		rep.Records += len(s.records)
		for _, d := range s.damaged {
			rep.Damaged = append(rep.Damaged, FileSpan{path, d})
		}
		if s.torn != nil {
			if name == snapshotName { // written whole and renamed: never torn
				rep.Damaged = append(rep.Damaged, FileSpan{path, *s.torn})
			} else {
				rep.TornTail = s.torn
			}
		}
	}
	return rep, nil
}

// Repair makes a damaged store in dir open again: each damaged file is
// renamed to <name>.corrupt-<time> (never deleted) and replaced by a file
// of every record that could be read. The records in the damaged spans are
// lost; Repair reports them. The directory must not be open.
func Repair(dir string) (Report, error) {
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return Report{}, fmt.Errorf("store: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return Report{}, fmt.Errorf("store: %s is in use by another process (stop the engine first): %w", dir, err)
	}
	rep, err := Verify(dir)
	if err != nil || len(rep.Damaged) == 0 {
		return rep, err
	}
	for _, path := range damagedFiles(rep) {
		data, err := os.ReadFile(path)
		if err != nil {
			return rep, fmt.Errorf("store: %w", err)
		}
		var buf []byte
		for _, r := range scan(data).records {
			buf = appendRecord(buf, r)
		}
		aside := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(path, aside); err != nil {
			return rep, fmt.Errorf("store: %w", err)
		}
		rep.MovedAside = aside
		if err := writeSync(path, buf); err != nil {
			return rep, err
		}
		if err := syncDir(dir); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func damagedFiles(rep Report) []string {
	var out []string
	for _, d := range rep.Damaged {
		if len(out) == 0 || out[len(out)-1] != d.Path {
			out = append(out, d.Path)
		}
	}
	return out
}

package store

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// On disk, the file adapter keeps a snapshot and a journal, both sequences
// of framed records:
//
//	frame  = length uint32 LE | crc32c(payload) uint32 LE | payload
//	record = kind byte | seq uvarint | stream | group | item | value
//
// where each name and the value is a uvarint length and its bytes. Names are
// stored as raw bytes, so any string round-trips exactly.
const (
	recPut   byte = 'p' // item = value, item seq = group seq = seq
	recDel   byte = 'd' // item removed, group seq = seq
	recEvent byte = 'e' // group seq = seq (an emitted change: nothing stored)
	recGroup byte = 'g' // snapshot only: group seq = seq
)

const frameHeader = 8

// maxRecord bounds one record so that a corrupt length cannot make a reader
// allocate without limit.
const maxRecord = 1 << 30

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type record struct {
	kind                byte
	seq                 uint64
	stream, group, item string
	value               []byte
}

func appendRecord(buf []byte, r record) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, frameHeader)...)
	buf = append(buf, r.kind)
	buf = binary.AppendUvarint(buf, r.seq)
	for _, s := range []string{r.stream, r.group, r.item} {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	buf = binary.AppendUvarint(buf, uint64(len(r.value)))
	buf = append(buf, r.value...)
	payload := buf[start+frameHeader:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(payload, crcTable))
	return buf
}

var errTorn = errors.New("torn or corrupt record")

// nextRecord decodes the frame at the start of b and returns the bytes it
// used. A short or corrupt frame is errTorn.
func nextRecord(b []byte) (record, int, error) {
	if len(b) < frameHeader {
		return record{}, 0, errTorn
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 || n > maxRecord || uint64(len(b)-frameHeader) < uint64(n) {
		return record{}, 0, errTorn
	}
	payload := b[frameHeader : frameHeader+int(n)]
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(b[4:]) {
		return record{}, 0, errTorn
	}
	r := record{kind: payload[0]}
	p := payload[1:]
	var k int
	if r.seq, k = binary.Uvarint(p); k <= 0 {
		return record{}, 0, errTorn
	}
	p = p[k:]
	var fields [4][]byte
	for i := range fields {
		l, k := binary.Uvarint(p)
		if k <= 0 || uint64(len(p)-k) < l {
			return record{}, 0, errTorn
		}
		fields[i], p = p[k:k+int(l)], p[k+int(l):]
	}
	r.stream, r.group, r.item = string(fields[0]), string(fields[1]), string(fields[2])
	if len(fields[3]) > 0 {
		r.value = append([]byte(nil), fields[3]...)
	}
	return r, frameHeader + int(n), nil
}

// changeRecord journals c; emitted says c was not stored (Emit).
func changeRecord(c Change, emitted bool) record {
	r := record{kind: recEvent, seq: c.Seq, stream: c.Stream, group: c.Group, item: c.Item}
	switch {
	case emitted:
	case c.Kind == KindCreate || c.Kind == KindUpdate:
		r.kind, r.value = recPut, c.Value
	case c.Kind == KindDelete:
		r.kind = recDel
	}
	return r
}

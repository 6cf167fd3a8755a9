// Package wire encodes the frames browsers receive. A change is encoded once
// into a frame; gateways write those same bytes to every subscriber, adding
// a subscription id by splicing, never by re-encoding.
//
// Every stream frame starts with its sequence and item id, so a gateway can
// route and de-duplicate it without parsing JSON:
//
//	{"seq":7,"id":"item-1","type":"stream","timestamp":1700000000000,
//	 "streamName":"todos","groupId":"inbox","event":{"type":"update","data":{…}}}
//
// Concurrency: every function is pure and safe to call concurrently, and an
// encoded frame is immutable once built, so many sockets may write the same
// bytes; the package starts no goroutines.
package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/trinehq/trine/streammodule/store"
)

// String appends s as a JSON string. All frames use it, so equal names give
// equal bytes.
func String(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}

// ItemID appends the frame's "id" value: null for "".
func ItemID(dst []byte, id string) []byte {
	if id == "" {
		return append(dst, "null"...)
	}
	return String(dst, id)
}

func header(seq uint64, stream, group, item string, ts time.Time) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"id":`...)
	b = ItemID(b, item)
	b = append(b, `,"type":"stream","timestamp":`...)
	b = strconv.AppendInt(b, ts.UnixMilli(), 10)
	b = append(b, `,"streamName":`...)
	b = String(b, stream)
	b = append(b, `,"groupId":`...)
	b = String(b, group)
	return b
}

func value(dst []byte, v json.RawMessage) []byte {
	if len(v) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, v...)
}

// Change encodes a committed change.
func Change(c store.Change) []byte {
	b := header(c.Seq, c.Stream, c.Group, c.Item, c.Time)
	if c.Kind == store.KindEvent {
		b = append(b, `,"event":{"type":"event","event":{"type":`...)
		b = String(b, c.EventType)
		b = append(b, `,"data":`...)
		b = value(b, c.Value)
		return append(b, "}}}"...)
	}
	b = append(b, `,"event":{"type":"`...)
	b = append(b, c.Kind.String()...)
	b = append(b, `","data":`...)
	b = value(b, c.Value)
	return append(b, "}}"...)
}

// Sync encodes a snapshot at group sequence seq. For an item subscription
// data is the item's value (null when missing) and ids is nil; for a group
// it is the array of values, with ids their item ids in the same order.
// resync marks a snapshot sent because history could not fill a gap.
// contract, when above 0, is the version of the stream's contract in
// force ("contractVersion").
func Sync(seq uint64, stream, group, item string, ts time.Time, data json.RawMessage, ids []string, resync bool, contract uint64) []byte {
	b := header(seq, stream, group, item, ts)
	b = append(b, `,"event":{"type":"sync","data":`...)
	b = value(b, data)
	if ids != nil {
		b = appendIDs(b, ids)
	}
	return syncEnd(b, resync, contract)
}

// A group's sync frame can be written in parts, one page of items at a
// time: SyncStart, the values (JSON text, separated by commas), then
// SyncEnd with the ids of every value, in the same order. The parts
// joined are the frame Sync gives for the same items.

// SyncStart is the first part of a group's sync frame, up to the opening
// bracket of its data.
func SyncStart(seq uint64, stream, group string, ts time.Time) []byte {
	b := header(seq, stream, group, "", ts)
	return append(b, `,"event":{"type":"sync","data":[`...)
}

// SyncEnd appends the last part: the end of the data array, ids and the
// resync mark and the contract version, as Sync.
func SyncEnd(dst []byte, ids []string, resync bool, contract uint64) []byte {
	dst = append(dst, ']')
	return syncEnd(appendIDs(dst, ids), resync, contract)
}

func appendIDs(b []byte, ids []string) []byte {
	b = append(b, `,"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = String(b, id)
	}
	return append(b, ']')
}

func syncEnd(b []byte, resync bool, contract uint64) []byte {
	if resync {
		b = append(b, `,"resync":true`...)
	}
	if contract > 0 {
		b = strconv.AppendUint(append(b, `,"contractVersion":`...), contract, 10)
	}
	return append(b, "}}"...)
}

// Schema encodes the notice that a subscription's stream has a new
// contract, version contract (GET /schemas/{stream} serves it).
func Schema(stream, group, item string, contract uint64, ts time.Time) []byte {
	b := header(0, stream, group, item, ts)
	b = strconv.AppendUint(append(b, `,"event":{"type":"schema","contractVersion":`...), contract, 10)
	return append(b, "}}"...)
}

// Unauthorized encodes a denied join.
func Unauthorized(stream, group, item string, ts time.Time) []byte {
	b := header(0, stream, group, item, ts)
	return append(b, `,"event":{"type":"unauthorized"}}`...)
}

// Error encodes an error frame: {"type":"error","code":…,"message":…}.
func Error(code, message string) []byte {
	b := append([]byte(`{"type":"error","code":`), String(nil, code)...)
	b = append(b, `,"message":`...)
	b = String(b, message)
	return append(b, '}')
}

var seqPrefix = []byte(`{"seq":`)

// Header returns a stream frame's sequence and its encoded item id (null
// or a JSON string, as ItemID writes it). ok is false for other frames.
func Header(frame []byte) (seq uint64, id []byte, ok bool) {
	if !bytes.HasPrefix(frame, seqPrefix) {
		return 0, nil, false
	}
	rest := frame[len(seqPrefix):]
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		seq = seq*10 + uint64(rest[i]-'0')
		i++
	}
	rest = rest[i:]
	const idKey = `,"id":`
	if i == 0 || !bytes.HasPrefix(rest, []byte(idKey)) {
		return 0, nil, false
	}
	rest = rest[len(idKey):]
	end := bytes.Index(rest, []byte(`,"type":"stream"`))
	if end < 0 {
		return 0, nil, false
	}
	return seq, rest[:end], true
}

var timestampKey = []byte(`,"type":"stream","timestamp":`)

// Timestamp reads a stream frame's "timestamp": when the store committed
// its change, in milliseconds since the epoch. ok is false for other
// frames and for times before 1970.
func Timestamp(frame []byte) (ms int64, ok bool) {
	i := bytes.Index(frame, timestampKey) // a name cannot hold it: its quotes are escaped
	if i < 0 {
		return 0, false
	}
	rest := frame[i+len(timestampKey):]
	n := 0
	for n < len(rest) && n < 18 && rest[n] >= '0' && rest[n] <= '9' {
		ms = ms*10 + int64(rest[n]-'0')
		n++
	}
	return ms, n > 0
}

// AppendWithSubscription appends frame with a "subscriptionId" member
// added; quotedID is the id as String encodes it.
func AppendWithSubscription(dst, frame, quotedID []byte) []byte {
	if len(frame) == 0 || frame[len(frame)-1] != '}' {
		return append(dst, frame...)
	}
	dst = append(dst, frame[:len(frame)-1]...)
	dst = append(dst, `,"subscriptionId":`...)
	dst = append(dst, quotedID...)
	return append(dst, '}')
}

package wire_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/wire"
)

type frame struct {
	Seq            uint64          `json:"seq"`
	ID             *string         `json:"id"`
	Type           string          `json:"type"`
	Timestamp      int64           `json:"timestamp"`
	StreamName     string          `json:"streamName"`
	GroupID        string          `json:"groupId"`
	SubscriptionID string          `json:"subscriptionId"`
	Event          json.RawMessage `json:"event"`
}

func decode(t *testing.T, b []byte) frame {
	t.Helper()
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return f
}

var names = []string{"todos", ".", "*", ">", ":", "a b", "🔥", `q"uote`, `,"type":"stream"`, "\\", "\n", "<b>"}

func TestChangeFrames(t *testing.T) {
	ts := time.UnixMilli(1700000000123)
	for _, n := range names {
		c := store.Change{Key: store.Key{Stream: n, Group: n + "g", Item: n + "i"}, Kind: store.KindUpdate,
			Value: json.RawMessage(`{"a":1}`), Seq: 42, Time: ts}
		b := wire.Change(c)
		f := decode(t, b)
		if f.Seq != 42 || f.ID == nil || *f.ID != n+"i" || f.Type != "stream" || f.Timestamp != ts.UnixMilli() ||
			f.StreamName != n || f.GroupID != n+"g" || string(f.Event) != `{"type":"update","data":{"a":1}}` {
			t.Fatalf("%q: %s", n, b)
		}
		seq, id, ok := wire.Header(b)
		if !ok || seq != 42 || string(id) != string(wire.ItemID(nil, n+"i")) {
			t.Fatalf("%q: Header = %d %s %v", n, seq, id, ok)
		}
		if ms, ok := wire.Timestamp(b); !ok || ms != ts.UnixMilli() {
			t.Fatalf("%q: Timestamp = %d %v, want %d", n, ms, ok, ts.UnixMilli())
		}
		spliced := wire.AppendWithSubscription(nil, b, wire.String(nil, n))
		if f := decode(t, spliced); f.SubscriptionID != n || f.Seq != 42 {
			t.Fatalf("%q: spliced %s", n, spliced)
		}
	}
}

// TestTimestampOfOtherFrames: a frame that is not a stream frame, or
// whose commit time is missing or before 1970, has no timestamp.
func TestTimestampOfOtherFrames(t *testing.T) {
	for _, b := range []string{`{"type":"pong"}`, `{"seq":1,"id":null,"type":"stream"}`, `{"seq":1,"id":null,"type":"stream","timestamp":-5}`,
		`{"seq":1,"id":null,"type":"stream","timestamp":x}`, `{"seq":1,"id":null,"type":"stream","timestamp":`} {
		if ms, ok := wire.Timestamp([]byte(b)); ok {
			t.Errorf("Timestamp(%s) = %d, want none", b, ms)
		}
	}
}

func TestEventAndSyncFrames(t *testing.T) {
	ts := time.Now()
	b := wire.Change(store.Change{Key: store.Key{Stream: "s", Group: "g"}, Kind: store.KindEvent, EventType: "typing", Value: json.RawMessage(`"x"`), Seq: 3, Time: ts})
	f := decode(t, b)
	if f.ID != nil || string(f.Event) != `{"type":"event","event":{"type":"typing","data":"x"}}` {
		t.Fatalf("event frame %s", b)
	}
	if _, id, ok := wire.Header(b); !ok || string(id) != "null" {
		t.Fatalf("event header id %s", id)
	}
	b = wire.Change(store.Change{Key: store.Key{Stream: "s", Group: "g", Item: "i"}, Kind: store.KindDelete, Seq: 4, Time: ts})
	if f := decode(t, b); string(f.Event) != `{"type":"delete","data":null}` {
		t.Fatalf("delete frame %s", b)
	}
	b = wire.Sync(9, "s", "g", "", ts, json.RawMessage(`[1,2]`), []string{"a", "b"}, true, 7)
	if f := decode(t, b); f.Seq != 9 || f.ID != nil || string(f.Event) != `{"type":"sync","data":[1,2],"ids":["a","b"],"resync":true,"contractVersion":7}` {
		t.Fatalf("sync frame %s", b)
	}
	b = wire.Sync(0, "s", "g", "i", ts, nil, nil, false, 0)
	if f := decode(t, b); string(f.Event) != `{"type":"sync","data":null}` || *f.ID != "i" {
		t.Fatalf("item sync frame %s", b)
	}
	b = wire.Schema("s", "g", "i", 8, ts)
	if f := decode(t, b); string(f.Event) != `{"type":"schema","contractVersion":8}` || *f.ID != "i" {
		t.Fatalf("schema frame %s", b)
	}
	b = wire.Unauthorized("s", "g", "", ts)
	if f := decode(t, b); string(f.Event) != `{"type":"unauthorized"}` {
		t.Fatalf("unauthorized frame %s", b)
	}
	if _, _, ok := wire.Header(wire.Error("bad_frame", "x")); ok {
		t.Fatal("Header accepted an error frame")
	}
	var e map[string]string
	if err := json.Unmarshal(wire.Error("bad_frame", `no "type"`), &e); err != nil || e["code"] != "bad_frame" || e["type"] != "error" {
		t.Fatalf("error frame: %v %v", e, err)
	}
}

// The parts of a paged sync frame, joined, are the frame Sync gives.
func TestSyncInParts(t *testing.T) {
	ts := time.Now()
	for _, resync := range []bool{false, true} {
		for _, ids := range [][]string{{}, {"a"}, names} {
			vals := make([]byte, 0)
			for i := range ids {
				if i > 0 {
					vals = append(vals, ',')
				}
				vals = append(vals, `{"n":`...)
				vals = append(vals, byte('0'+i%10))
				vals = append(vals, '}')
			}
			whole := wire.Sync(5, "s", `g"`, "", ts, json.RawMessage("["+string(vals)+"]"), ids, resync, 2)
			parts := append(wire.SyncStart(5, "s", `g"`, ts), vals...)
			parts = wire.SyncEnd(parts, ids, resync, 2)
			if string(parts) != string(whole) {
				t.Fatalf("parts\n%s\nwhole\n%s", parts, whole)
			}
		}
	}
}

package streammodule_test

import (
	"encoding/json"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/streamapi"
)

// TestGroupInfo: stream::group_info gives a group's seq, its history's
// fill against its bounds, and the resync snapshots served in the last
// minute (a resync's later pages are not counted again); a missing group
// id is invalid_argument, and a caller that may not read the group
// (stream::get) is forbidden.
func TestGroupInfo(t *testing.T) {
	t.Parallel()
	v := start(t, streammodule.Config{HistorySize: 2})
	for _, id := range []string{"a", "b", "c"} {
		v.must(t, streammodule.FnSet, `{"stream_name":"s","group_id":"g","item_id":"`+id+`","data":{"n":1}}`)
	}
	for _, q := range []streamapi.SnapshotRequest{
		{StreamName: "s", GroupID: "g", Resync: true},
		{StreamName: "s", GroupID: "g", Resync: true, PageBytes: 10},
		{StreamName: "s", GroupID: "g", Resync: true, PageBytes: 10, After: "a"},
		{StreamName: "s", GroupID: "g"},
		{StreamName: "s", GroupID: "other", Resync: true},
	} {
		if _, err := v.m.Snapshot(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	var got streammodule.GroupInfo
	if err := json.Unmarshal([]byte(v.must(t, streammodule.FnGroupInfo, `{"stream_name":"s","group_id":"g"}`)), &got); err != nil {
		t.Fatal(err)
	}
	h := got.History
	if got.Seq != 3 || h == nil || h.Events != 2 || h.MaxEvents != 2 || h.Bytes == 0 || h.MaxBytes != streammodule.DefaultHistoryGroupBytes || got.ResyncsPerMin != 2 {
		t.Fatalf("group_info = %+v (history %+v), want seq 3, 2 of 2 events held, 2 resyncs", got, h)
	}
	if out := v.must(t, streammodule.FnGroupInfo, `{"stream_name":"s","group_id":"none"}`); out != `{"stream_name":"s","group_id":"none","seq":0,"history":{"events":0,"max_events":2,"bytes":0,"max_bytes":16777216},"resyncs_per_min":0}` {
		t.Fatalf("group_info of an empty group = %s", out)
	}
	_, err := v.call(t, streammodule.FnGroupInfo, `{"stream_name":"s"}`)
	wantCode(t, err, codes.InvalidArgument)
	// It reads the group: a caller that may not call stream::get may not.
	g, err := v.e.Authenticate(t.Context(), &engine.Access{ExposeFunctions: []engine.Filter{{Match: streammodule.FnGroupInfo}}}, engine.AuthInput{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.e.Trigger(t.Context(), engine.Call{FunctionID: streammodule.FnGroupInfo, Payload: []byte(`{"stream_name":"s","group_id":"g"}`), Grant: g})
	wantCode(t, err, codes.Forbidden)
}

package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/streammodule"
)

// fillGroup writes n items of about size bytes each and returns their ids
// in id order and their values.
func fillGroup(t *testing.T, s *stack, stream, group string, n, size int) ([]string, map[string]string) {
	t.Helper()
	ids := make([]string, n)
	vals := make(map[string]string, n)
	for i := range n {
		id := fmt.Sprintf("item-%04d", i)
		v := fmt.Sprintf("%d:%s", i, strings.Repeat("v", size+i%7))
		s.set(t, stream, group, id, v)
		ids[i], vals[id] = id, v
	}
	slices.Sort(ids)
	return ids, vals
}

// checkSync asserts that f is a group sync frame holding exactly ids with
// vals.
func checkSync(t *testing.T, f frame, ids []string, vals map[string]string) {
	t.Helper()
	e := f.event(t)
	var data []string
	if err := json.Unmarshal(e.Data, &data); err != nil {
		t.Fatalf("sync data: %v: %.300s", err, f.Raw)
	}
	if !slices.Equal(e.IDs, ids) || len(data) != len(ids) {
		t.Fatalf("sync holds %d ids and %d values, want %d", len(e.IDs), len(data), len(ids))
	}
	for i, id := range ids {
		if data[i] != vals[id] {
			t.Fatalf("item %s: %.40q, want %.40q", id, data[i], vals[id])
		}
	}
}

// A group many pages long reaches WebSocket and SSE clients as one sync
// message, the same one a single page gives, through the module and
// through the engine's gateway functions; on a multiplexed socket no
// other frame comes between its parts (a client would fail on that).
func TestPagedSnapshot(t *testing.T) {
	s := newStack(t, gateway.Config{SnapshotPageBytes: 4 << 10}, streammodule.Config{})
	ids, vals := fillGroup(t, s, "s", "big", 300, 200)

	remote, err := gateway.New(gateway.Config{Backend: gateway.RemoteBackend(s.e), Events: s.sub, SnapshotPageBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	rsrv := httptest.NewServer(remote)
	t.Cleanup(func() { remote.Close(); rsrv.Close() })

	for name, st := range map[string]*stack{"module": s, "remote": {srv: rsrv}} {
		t.Run(name, func(t *testing.T) {
			f := st.dial(t, groupPath("s", "big"), nil).read()
			if f.Seq != 300 {
				t.Fatalf("sync seq %d", f.Seq)
			}
			checkSync(t, f, ids, vals)

			id, f := st.sse(t, groupPath("s", "big"), nil).next()
			if id != "300" {
				t.Fatalf("SSE id %q", id)
			}
			checkSync(t, f, ids, vals)

			// Joins of the big group and of a small one that is written
			// meanwhile: every frame arrives whole.
			m := st.dial(t, "/", nil)
			for i := range 3 {
				m.send(join("big"+strconv.Itoa(i), "s", "big"))
				m.send(join("small"+strconv.Itoa(i), "s", "small-"+name))
			}
			bigs, smalls, events := 0, 0, 0
			for bigs < 3 || smalls < 3 || events < 3*20 {
				f := m.read()
				switch {
				case strings.HasPrefix(*f.SubscriptionID, "big"):
					checkSync(t, f, ids, vals)
					bigs++
				case f.kind() == "sync":
					if smalls++; smalls == 3 {
						for i := range 20 {
							s.set(t, "s", "small-"+name, "x", i)
						}
					}
				default:
					events++
				}
			}
		})
	}
}

// Items written while a paged snapshot is read may show in later pages
// already; the events that follow the snapshot bring every client to the
// group's final state all the same.
func TestPagedSnapshotConverges(t *testing.T) {
	s := newStack(t, gateway.Config{SnapshotPageBytes: 2 << 10}, streammodule.Config{})
	ids, _ := fillGroup(t, s, "s", "g", 200, 100)
	ctx, stop := context.WithCancel(context.Background())
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ctx.Err() == nil; i++ {
				id := ids[r.IntN(len(ids))]
				switch r.IntN(5) {
				case 0:
					s.call(t, "stream::delete", map[string]any{"stream_name": "s", "group_id": "g", "item_id": id})
				default:
					s.set(t, "s", "g", id, fmt.Sprintf("w%d-%d", w, i))
				}
			}
		})
	}
	clients := make([]*client, 8)
	for i := range clients {
		clients[i] = s.dial(t, groupPath("s", "g"), nil)
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	stop()
	writers.Wait()
	// The last write: every client stops at it.
	var last struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal([]byte(s.call(t, "stream::set", map[string]any{"stream_name": "s", "group_id": "g", "item_id": "zz-last", "data": "end"})), &last); err != nil || last.Seq == 0 {
		t.Fatalf("the last write: seq %d, %v", last.Seq, err)
	}

	var want map[string]json.RawMessage
	var list struct {
		Items []struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(s.call(t, "stream::list", map[string]any{"stream_name": "s", "group_id": "g", "include_ids": true})), &list); err != nil {
		t.Fatal(err)
	}
	want = make(map[string]json.RawMessage)
	for _, it := range list.Items {
		want[it.ID] = it.Data
	}
	for n, c := range clients {
		state := map[string]json.RawMessage{}
		for done := false; !done; {
			f := c.read()
			e := f.event(t)
			switch e.Type {
			case "sync":
				var data []json.RawMessage
				if err := json.Unmarshal(e.Data, &data); err != nil || len(data) != len(e.IDs) {
					t.Fatalf("client %d: sync %v", n, err)
				}
				clear(state)
				for i, id := range e.IDs {
					state[id] = data[i]
				}
				// A client that fell behind is synced again. A paged
				// snapshot carries its first page's seq, and the events
				// after it follow: one taken at the last write or later
				// is the group's final state.
				done = f.Seq >= last.Seq
				continue
			case "create", "update":
				state[*f.ID] = e.Data
			case "delete":
				delete(state, *f.ID)
			}
			done = f.ID != nil && *f.ID == "zz-last"
		}
		if len(state) != len(want) {
			t.Fatalf("client %d ends with %d items, the group has %d", n, len(state), len(want))
		}
		for id, v := range want {
			if string(state[id]) != string(v) {
				t.Fatalf("client %d: item %s is %s, the group has %s", n, id, state[id], v)
			}
		}
	}
}

// A socket that never reads holds a few pages of a large group, not the
// group: four joins of a 16 MiB group grow the heap by a few MiB (the
// whole snapshot, held for each join and copied by the writer, used to
// grow it by 131 MiB).
func TestPagedSnapshotMemory(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	pad := strings.Repeat("x", 256<<10)
	for i := range 64 {
		s.set(t, "big", "g", strconv.Itoa(i), pad)
	}
	heap0 := liveHeap()
	nc := rawUpgrade(t, s, "/")
	if resp, err := http.ReadResponse(bufio.NewReader(nc), nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v", err)
	}
	for i := range 4 {
		msg := fmt.Sprintf(`{"type":"join","data":{"subscriptionId":"s%d","streamName":"big","groupId":"g"}}`, i)
		if err := ws.WriteFrame(nc, ws.MaskFrame(ws.NewTextFrame([]byte(msg)))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	grown := liveHeap() - heap0
	t.Logf("heap grew by %d KiB with 4 joins of a 16 MiB group pending", grown>>10)
	if grown > 6<<20 {
		t.Fatalf("heap grew by %d MiB: a paged snapshot is held whole", grown>>20)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
)

// presenceMember and presenceFrame are the documented presence shapes
// (docs/streams-api.md), decoded strictly.
type presenceMember struct {
	Identity    string          `json:"identity"`
	Anonymous   bool            `json:"anonymous"`
	Connections int             `json:"connections"`
	JoinedAt    int64           `json:"joined_at"`
	Meta        json.RawMessage `json:"meta"`
}

type presenceFrame struct {
	Type           string `json:"type"`
	SubscriptionID string `json:"subscriptionId"`
	Event          struct {
		Type    string           `json:"type"`
		Members []presenceMember `json:"members"`
		Member  *presenceMember  `json:"member"`
		Count   *int             `json:"count"`
		More    *bool            `json:"more"`
	} `json:"event"`
}

// presenceClient is a browser on a gateway's multiplexed socket with one
// presence subscription; it keeps the members it was told of and every
// event it got.
type presenceClient struct {
	t    *testing.T
	name string
	c    *websocket.Conn
	done chan struct{}

	mu      sync.Mutex
	members map[string]presenceMember
	events  []string // "join alice", "leave bob", …
	err     error
}

func dialPresence(t *testing.T, stream, user string) *presenceClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+stream+"/?user="+user, nil)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", stream, user, err)
	}
	pc := &presenceClient{t: t, name: user, c: c, done: make(chan struct{}), members: map[string]presenceMember{}}
	join, _ := json.Marshal(map[string]any{"type": "join", "data": map[string]any{"subscriptionId": "p", "streamName": "rooms", "groupId": "lobby", "presence": true}})
	if err := c.Write(ctx, websocket.MessageText, join); err != nil {
		t.Fatal(err)
	}
	go pc.read()
	t.Cleanup(func() { c.CloseNow(); <-pc.done })
	return pc
}

func (pc *presenceClient) read() {
	defer close(pc.done)
	for {
		_, b, err := pc.c.Read(context.Background())
		if err != nil {
			return
		}
		if !bytes.Contains(b, []byte(`"type":"presence"`)) || bytes.Contains(b, []byte(`"type":"stream"`)) {
			continue
		}
		var f presenceFrame
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		pc.mu.Lock()
		if err := d.Decode(&f); err != nil {
			pc.err = fmt.Errorf("frame %s: %w", b, err)
		}
		switch f.Event.Type {
		case "sync":
			pc.members = map[string]presenceMember{}
			for _, m := range f.Event.Members {
				pc.members[m.Identity] = m
			}
		case "join", "update":
			pc.members[f.Event.Member.Identity] = *f.Event.Member
		case "leave":
			delete(pc.members, f.Event.Member.Identity)
		}
		if f.Event.Member != nil {
			pc.events = append(pc.events, f.Event.Type+" "+f.Event.Member.Identity)
		}
		pc.mu.Unlock()
	}
}

// view is the members as "name:connections", sorted.
func (pc *presenceClient) view() string {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.err != nil {
		pc.t.Fatal(pc.err)
	}
	var out []string
	for id, m := range pc.members {
		out = append(out, fmt.Sprintf("%s:%d", id, m.Connections))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func (pc *presenceClient) saw(event string) bool { return pc.count(event) > 0 }

// count is how many times the client got event.
func (pc *presenceClient) count(event string) int {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	n := 0
	for _, e := range pc.events {
		if e == event {
			n++
		}
	}
	return n
}

// TestPresenceFleetKillGateway: three trine gateway processes, each on
// its own node of a three-node NATS cluster, share presence: every
// gateway's observer sees the same members; a reload that moves to
// another gateway within the grace fires no leave; after kill -9 of one
// gateway its members leave everywhere within --presence-ttl, and
// stream::presence shows no ghost.
func TestPresenceFleetKillGateway(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	cl := natstest.StartCluster(t, 3)
	presenceArgs := []string{"--stream-auth-function", "test::auth", "--presence-ttl", ttl.String(), "--presence-grace", "1s", "--presence-replicas", "3"}
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, append([]string{"--nats-url", cl.URLs(0), "--store", "memory"}, presenceArgs...)...)...)
	w := connectWorker(t, e.grpc)
	if err := w.RegisterFunction(t.Context(), "test::auth", func(_ context.Context, in json.RawMessage) (any, error) {
		var a struct {
			QueryParams map[string][]string `json:"query_params"`
		}
		_ = json.Unmarshal(in, &a)
		return map[string]any{"context": map[string]any{"identity": a.QueryParams["user"][0]}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	var gws []string
	var procs []*proc
	for i := range 3 {
		p, stream, httpAddr := startGatewayProc(t, append([]string{"--engine", e.grpc, "--nats-url", cl.URLs(i)}, presenceArgs...)...)
		poll.CheckFor(t, startTimeout, poll.Holds("gateway ready", func() bool { code, _ := get(t, httpAddr+"/readyz"); return code == 200 }))
		gws, procs = append(gws, stream), append(procs, p)
	}
	var obs []*presenceClient
	for i, gw := range gws {
		obs = append(obs, dialPresence(t, gw, fmt.Sprintf("o%d", i)))
	}
	dialPresence(t, gws[1], "alice")
	dialPresence(t, gws[2], "alice") // a second tab, on another gateway
	bob := dialPresence(t, gws[2], "bob")
	dialPresence(t, gws[2], "carol")
	all := "alice:2,bob:1,carol:1,o0:1,o1:1,o2:1"
	for _, o := range obs {
		poll.CheckFor(t, 20*time.Second, poll.Holds(o.name+" sees every member", func() bool { return o.view() == all }))
	}

	// bob reloads onto gateway 0 within the grace: no leave anywhere.
	bob.c.CloseNow()
	<-bob.done
	dialPresence(t, gws[0], "bob")
	// Watch every observer until well past the grace: a leave would have
	// come by then.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for until := time.Now().Add(2 * time.Second); time.Now().Before(until); <-tick.C {
		for _, o := range obs {
			if o.saw("leave bob") || o.count("join bob") > 1 {
				t.Fatalf("%s saw bob leave or join again on a reload: %v", o.name, o.events)
			}
		}
	}
	for _, o := range obs {
		poll.CheckFor(t, 5*time.Second, poll.Holds(o.name+" after bob's reload", func() bool { return o.view() == all }))
	}

	// kill -9 gateway 2: carol, o2 and alice's second tab were there.
	if err := procs[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-procs[2].done
	killed := time.Now()
	want := "alice:1,bob:1,o0:1,o1:1"
	var took []time.Duration
	for _, o := range obs[:2] {
		poll.CheckFor(t, 3*ttl, poll.Holds(o.name+" sees gateway 2's members leave", func() bool { return o.view() == want }))
		took = append(took, time.Since(killed))
	}
	for i, d := range took {
		if d > ttl+1500*time.Millisecond {
			t.Errorf("observer %d saw the dead gateway's members leave after %v; --presence-ttl is %v", i, d, ttl)
		}
	}
	t.Logf("members of a killed gateway left after %v (TTL %v)", took, ttl)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := w.Trigger(ctx, "stream::presence", map[string]any{"stream_name": "rooms", "group_id": "lobby"})
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Members []presenceMember `json:"members"`
		Count   int              `json:"count"`
		More    bool             `json:"more"`
	}
	d := json.NewDecoder(bytes.NewReader(out))
	d.DisallowUnknownFields()
	if err := d.Decode(&page); err != nil {
		t.Fatalf("stream::presence %s: %v", out, err)
	}
	var got []string
	for _, m := range page.Members {
		got = append(got, fmt.Sprintf("%s:%d", m.Identity, m.Connections))
	}
	if strings.Join(got, ",") != want || page.Count != 4 || page.More {
		t.Fatalf("stream::presence after the kill: %s, want %s (no ghosts)", out, want)
	}
}

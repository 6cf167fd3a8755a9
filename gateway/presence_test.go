package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/streamapi"
)

// presenceFrame is a presence frame as documented in docs/streams-api.md,
// decoded strictly: a field the documentation does not name fails the test.
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
	raw string
}

type presenceMember struct {
	Identity    string          `json:"identity"`
	Anonymous   bool            `json:"anonymous"`
	Connections int             `json:"connections"`
	JoinedAt    int64           `json:"joined_at"`
	Meta        json.RawMessage `json:"meta"`
}

// readNot returns the next frame whose type is not typ.
func (c *client) readNot(typ string) frame {
	c.t.Helper()
	for {
		if f := c.read(); f.Type != typ {
			return f
		}
	}
}

func decodePresence(t testing.TB, b []byte) presenceFrame {
	t.Helper()
	var f presenceFrame
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil || f.Type != "presence" || f.SubscriptionID == "" {
		t.Fatalf("presence frame %s: %v", b, err)
	}
	if m := f.Event.Member; m != nil && (m.Identity == "" || m.JoinedAt == 0) {
		t.Fatalf("member without identity or joined_at: %s", b)
	}
	f.raw = string(b)
	return f
}

// nextPresence returns the connection's next presence frame, skipping
// stream frames.
func (c *client) nextPresence() presenceFrame {
	c.t.Helper()
	for {
		f := c.read()
		if f.Type == "presence" {
			return decodePresence(c.t, []byte(f.Raw))
		}
		if f.Type == "error" {
			c.t.Fatalf("error frame while waiting for presence: %s", f.Raw)
		}
	}
}

// quietPresence asserts that no presence frame arrives for d.
func (c *client) quietPresence(d time.Duration) {
	c.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case b := <-c.frames:
			if f := parseFrame(c.t, b); f.Type == "presence" || f.Type == "error" {
				c.t.Fatalf("unexpected frame %s", b)
			}
		case <-deadline.C:
			return
		}
	}
}

// presenceStack is a gateway whose auth function makes ?user=NAME that
// identity (no user: a context without one).
func presenceStack(t *testing.T, cfg gateway.Config) *stack {
	t.Helper()
	cfg.AuthFunction = "auth::presence"
	s := newStack(t, cfg, streammodule.Config{})
	if err := s.e.RegisterFunction("auth::presence", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		var in struct {
			QueryParams map[string][]string `json:"query_params"`
		}
		_ = json.Unmarshal(c.Payload, &in)
		if u := in.QueryParams["user"]; len(u) > 0 {
			return json.Marshal(map[string]any{"context": map[string]any{"identity": u[0], "role": "x"}})
		}
		return []byte(`{"context":{"role":"guest"}}`), nil
	})); err != nil {
		t.Fatal(err)
	}
	return s
}

func presenceJoin(sub string, presence any) map[string]any {
	return join(sub, "rooms", "lobby", "presence", presence)
}

func names(ms []presenceMember) string {
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(m.Identity)
	}
	return b.String()
}

// TestPresenceTabsAreOneMember: three tabs of one identity are one member
// with three connections; an observer sees sync, join, updates, and the
// leave only after the last tab went and the grace passed.
func TestPresenceTabsAreOneMember(t *testing.T) {
	s := presenceStack(t, gateway.Config{PresenceGrace: 300 * time.Millisecond})
	obs := s.dial(t, "/?user=observer", nil)
	obs.send(presenceJoin("o", true))
	f := obs.nextPresence()
	must(t, f.Event.Type == "sync" && names(f.Event.Members) == "observer" && f.Event.Members[0].Connections == 1, "observer sync: %s", f.raw)

	var tabs []*client
	for i := range 3 {
		c := s.dial(t, "/?user=ada", nil)
		c.send(presenceJoin("p", map[string]any{"meta": map[string]any{"tab": i}}))
		sync := c.nextPresence()
		must(t, sync.Event.Type == "sync", "tab sync: %s", sync.raw)
		tabs = append(tabs, c)
		f := obs.nextPresence()
		want := "update"
		if i == 0 {
			want = "join"
		}
		must(t, f.Event.Type == want && f.Event.Member.Identity == "ada" && f.Event.Member.Connections == i+1,
			"tab %d: observer got %s, want %s with %d connections", i, f.raw, want, i+1)
		must(t, string(f.Event.Member.Meta) == `{"tab":`+string(rune('0'+i))+`}`, "meta of the latest join: %s", f.raw)
	}
	tabs[2].send(presenceJoin("q", true)) // a second subscription of one tab is no new connection
	tabs[2].nextPresence()
	obs.quietPresence(100 * time.Millisecond)

	for _, c := range tabs {
		c.c.CloseNow()
	}
	start := time.Now()
	var got []string
	for {
		f := obs.nextPresence()
		if len(got) == 0 {
			must(t, time.Since(start) >= 250*time.Millisecond, "first change after %v, within the grace: %s", time.Since(start), f.raw)
		}
		got = append(got, f.Event.Type)
		if f.Event.Type == "leave" {
			must(t, f.Event.Member.Identity == "ada" && f.Event.Member.Connections == 0, "leave: %s", f.raw)
			break
		}
	}
	// Within its grace a connection still counts: the count goes down as
	// each grace passes (graces that end together make one change), then
	// the member leaves.
	must(t, strings.TrimPrefix(strings.TrimPrefix(strings.Join(got, ","), "update,"), "update,") == "leave", "events after the tabs closed: %v", got)
}

// TestPresenceReloadWithinGrace: a page reload (the only connection of an
// identity closes and another opens within the grace) is neither a leave
// nor a join, nor even an update.
func TestPresenceReloadWithinGrace(t *testing.T) {
	s := presenceStack(t, gateway.Config{PresenceGrace: 2 * time.Second})
	obs := s.dial(t, "/?user=observer", nil)
	obs.send(presenceJoin("o", true))
	obs.nextPresence()
	c := s.dial(t, "/?user=ada", nil)
	c.send(presenceJoin("p", true))
	c.nextPresence()
	must(t, obs.nextPresence().Event.Type == "join", "join")
	c.c.CloseNow()
	<-c.done
	c2 := s.dial(t, "/?user=ada", nil)
	c2.send(presenceJoin("p", true))
	f := c2.nextPresence()
	must(t, f.Event.Type == "sync" && names(f.Event.Members) == "ada,observer" && f.Event.Members[0].Connections == 1, "reloaded sync: %s", f.raw)
	obs.quietPresence(2500 * time.Millisecond) // past the grace of the closed one
	// A leave frame ends the membership the same way.
	c2.send(leave("p", "rooms", "lobby"))
	f = obs.nextPresence()
	must(t, f.Event.Type == "leave" && f.Event.Member.Identity == "ada", "leave after the grace: %s", f.raw)
}

// TestPresenceAnonymous: connections without an identity are members of
// their own, marked anonymous, never merged with a real identity spelled
// the same.
func TestPresenceAnonymous(t *testing.T) {
	s := presenceStack(t, gateway.Config{PresenceGrace: -1})
	a := s.dial(t, "/", nil)
	a.send(presenceJoin("p", true))
	fa := a.nextPresence()
	must(t, len(fa.Event.Members) == 1 && fa.Event.Members[0].Anonymous && strings.HasPrefix(fa.Event.Members[0].Identity, "anon:"), "anonymous sync: %s", fa.raw)
	anon := fa.Event.Members[0].Identity
	b := s.dial(t, "/", nil)
	b.send(presenceJoin("p", true))
	fb := b.nextPresence()
	must(t, len(fb.Event.Members) == 2, "two anonymous connections are two members: %s", fb.raw)
	f := a.nextPresence()
	must(t, f.Event.Type == "join" && f.Event.Member.Anonymous && f.Event.Member.Identity != anon, "second anonymous: %s", f.raw)
	// A real identity spelled like an anonymous one is another member.
	r := s.dial(t, "/?user="+anon, nil)
	r.send(presenceJoin("p", true))
	fr := r.nextPresence()
	must(t, len(fr.Event.Members) == 3, "a real identity spelled like an anonymous one: %s", fr.raw)
	f = a.nextPresence()
	must(t, f.Event.Type == "join" && !f.Event.Member.Anonymous && f.Event.Member.Identity == anon, "real member: %s", f.raw)
}

// TestPresenceRefusalsChangeNothing: bad presence, meta over 1 KiB and a
// connection past its presence limit are refused with an error frame, and
// the subscription they would have replaced stays.
func TestPresenceRefusalsChangeNothing(t *testing.T) {
	s := presenceStack(t, gateway.Config{PresenceMaxPerConn: 2, PresenceGrace: -1})
	obs := s.dial(t, "/?user=observer", nil)
	obs.send(presenceJoin("o", true))
	obs.nextPresence()
	c := s.dial(t, "/?user=ada", nil)
	c.send(presenceJoin("p", map[string]any{"meta": map[string]any{"v": 1}}))
	c.nextPresence()
	must(t, obs.nextPresence().Event.Type == "join", "join")

	big := strings.Repeat("x", 1100)
	for _, tc := range []struct {
		name, code string
		presence   any
	}{
		{"meta too large", "presence_meta_too_large", map[string]any{"meta": map[string]any{"x": big}}},
		{"meta not an object", "bad_frame", map[string]any{"meta": "hello"}},
		{"unknown field", "bad_frame", map[string]any{"metadata": map[string]any{}}},
		{"number", "bad_frame", 1},
		{"lone surrogate in meta", "bad_frame", json.RawMessage(`{"meta":{"a":"\ud800"}}`)},
		{"lone surrogate in a meta key", "bad_frame", json.RawMessage(`{"meta":{"\udfff":1}}`)},
		{"meta twice", "bad_frame", json.RawMessage(`{"meta":{"v":2},"meta":null}`)},
	} {
		c.send(presenceJoin("p", tc.presence))
		f := c.readNot("stream")
		must(t, f.Type == "error" && f.Code == tc.code && f.SubscriptionID != nil && *f.SubscriptionID == "p", "%s: %s", tc.name, f.Raw)
	}
	c.send(join("i", "rooms", "lobby", "id", "item", "presence", true))
	f := c.readNot("stream")
	must(t, f.Type == "error" && f.Code == "bad_frame", "presence on an item: %s", f.Raw)
	obs.quietPresence(100 * time.Millisecond) // nothing changed: ada is still there, meta unchanged

	c.send(presenceJoin("p2", true))
	c.nextPresence()
	c.send(presenceJoin("p3", true))
	f = c.readNot("stream")
	must(t, f.Type == "error" && f.Code == "presence_limit", "third presence subscription: %s", f.Raw)

	// p still works: a page lists ada with her meta.
	c.send(map[string]any{"type": "presence", "data": map[string]any{"subscriptionId": "p"}})
	pf := c.nextPresence()
	must(t, pf.Event.Type == "page" && names(pf.Event.Members) == "ada,observer" && string(pf.Event.Members[0].Meta) == `{"v":1}`, "page: %s", pf.raw)
}

// TestPresenceLargeGroupCounts: past PresenceMaxMembers subscribers get
// counts, pages on request, and a sync when the group shrinks back.
func TestPresenceLargeGroupCounts(t *testing.T) {
	s := presenceStack(t, gateway.Config{PresenceMaxMembers: 3, PresenceGrace: -1})
	obs := s.dial(t, "/?user=a0", nil)
	obs.send(presenceJoin("o", true))
	obs.nextPresence()
	var cs []*client
	for _, u := range []string{"a1", "a2", "a3"} {
		c := s.dial(t, "/?user="+u, nil)
		c.send(presenceJoin("p", true))
		cs = append(cs, c)
	}
	var last presenceFrame
	for last.Event.Type != "count" {
		last = obs.nextPresence()
	}
	must(t, *last.Event.Count == 4, "count: %s", last.raw)
	late := s.dial(t, "/?user=a4", nil)
	late.send(presenceJoin("p", true))
	f := late.nextPresence()
	must(t, f.Event.Type == "count" && *f.Event.Count == 5, "a late subscriber of a large group gets the count first: %s", f.raw)
	late.send(map[string]any{"type": "presence", "data": map[string]any{"subscriptionId": "p", "limit": 2, "after": "a1"}})
	f = late.nextPresence()
	must(t, f.Event.Type == "page" && names(f.Event.Members) == "a2,a3" && *f.Event.Count == 5 && *f.Event.More, "page: %s", f.raw)
	late.c.CloseNow()
	cs[0].c.CloseNow()
	for {
		f = obs.nextPresence()
		if f.Event.Type == "sync" {
			break
		}
		must(t, f.Event.Type == "count", "while large: %s", f.raw)
	}
	must(t, names(f.Event.Members) == "a0,a2,a3", "sync once the group shrank: %s", f.raw)
}

// TestPresenceJoinTriggerPayload: stream:join handlers still run for a
// presence join, and see who the member is.
func TestPresenceJoinTriggerPayload(t *testing.T) {
	s := presenceStack(t, gateway.Config{PresenceGrace: -1})
	got := make(chan streamapi.Subscription, 4)
	joinTrigger(t, s, "", func(_ context.Context, c engine.Call) ([]byte, error) {
		var in streamapi.Subscription
		_ = json.Unmarshal(c.Payload, &in)
		got <- in
		return []byte(`{}`), nil
	})
	c := s.dial(t, "/?user=ada", nil)
	c.send(presenceJoin("p", map[string]any{"meta": map[string]any{"n": 1}}))
	c.nextPresence()
	in := <-got
	must(t, in.Presence != nil && in.Presence.Identity == "ada" && string(in.Presence.Meta) == `{"n":1}`, "join payload: %+v", in)
	c.send(join("plain", "rooms", "lobby"))
	in = <-got
	must(t, in.Presence == nil, "a join without presence: %+v", in)
}

// TestPresenceReservationsReleased: every way a presence subscription
// ends (leave, a join that replaces it, a denied join, a closed socket)
// hands its reservation back, and the gateway forgets the group.
func TestPresenceReservationsReleased(t *testing.T) {
	s := presenceStack(t, gateway.Config{PresenceGrace: -1})
	joinTrigger(t, s, `{"stream_name":"closed"}`, func(context.Context, engine.Call) ([]byte, error) {
		return []byte(`{"unauthorized":true}`), nil
	})
	c := s.dial(t, "/?user=ada", nil)
	c.send(presenceJoin("a", true))
	c.nextPresence()
	c.send(presenceJoin("a", map[string]any{"meta": map[string]any{"v": 2}})) // replaces a
	c.nextPresence()
	c.send(presenceJoin("b", true))
	c.nextPresence()
	c.send(join("x", "closed", "g", "presence", true))
	must(t, c.readNot("presence").Type == "stream", "denied join")
	st := s.gw.Stats()
	must(t, st.PresenceSubscriptions == 2 && st.PresenceGroups == 1, "while joined: %+v", st)
	c.send(leave("b", "rooms", "lobby"))
	poll.CheckFor(t, 5*time.Second, poll.Holds("b's reservation back", func() bool { return s.gw.Stats().PresenceSubscriptions == 1 }))
	c.c.CloseNow()
	poll.CheckFor(t, 5*time.Second, poll.Holds("every reservation back and the group forgotten", func() bool {
		st := s.gw.Stats()
		return st.PresenceSubscriptions == 0 && st.PresenceGroups == 0
	}))
}

// joinTrigger registers h as a stream:join handler with config (""
// for every group) until the test ends.
func joinTrigger(t *testing.T, s *stack, config string, h engine.HandlerFunc) {
	t.Helper()
	if err := s.e.RegisterFunction("test::on_join", "", h); err != nil {
		t.Fatal(err)
	}
	sess, err := s.e.Attach(engine.WorkerInfo{Name: "t"}, nopPeer{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	tr := engine.Trigger{ID: "j", Type: streammodule.TriggerJoin, FunctionID: "test::on_join"}
	if config != "" {
		tr.Config = json.RawMessage(config)
	}
	if err := sess.RegisterTrigger(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
}

// TestPresenceIdentityFromToken: with JSON Web Tokens the member is the
// token's sub, so two tabs with tokens of one subject are one member.
func TestPresenceIdentityFromToken(t *testing.T) {
	s := tokenStack(t)
	a := s.dial(t, "/?token="+token(t, "user-7", time.Hour), nil)
	a.send(presenceJoin("p", true))
	f := a.nextPresence()
	must(t, names(f.Event.Members) == "user-7" && !f.Event.Members[0].Anonymous, "sync: %s", f.raw)
	b := s.dial(t, "/?token="+token(t, "user-7", time.Hour), nil)
	b.send(presenceJoin("p", true))
	f = b.nextPresence()
	must(t, names(f.Event.Members) == "user-7" && f.Event.Members[0].Connections == 2, "second tab: %s", f.raw)
}

// TestPresenceTotalLimits: past the gateway's count or bytes of presence
// subscriptions a join is refused with presence_limit and nothing changes;
// a place freed is taken again.
func TestPresenceTotalLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  gateway.Config
	}{
		{"count", gateway.Config{PresenceMaxTotal: 2}},
		{"bytes", gateway.Config{PresenceMaxTotalBytes: 2*128 + 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.PresenceGrace = -1
			s := presenceStack(t, tc.cfg)
			a := s.dial(t, "/?user=a", nil)
			a.send(presenceJoin("p", map[string]any{"meta": map[string]any{"n": 1}}))
			a.nextPresence()
			b := s.dial(t, "/?user=b", nil)
			b.send(presenceJoin("p", true))
			b.nextPresence()
			c := s.dial(t, "/?user=c", nil)
			c.send(presenceJoin("p", true))
			f := c.readNot("stream")
			must(t, f.Type == "error" && f.Code == "presence_limit", "third: %s", f.Raw)
			must(t, s.gw.Stats().PresenceSubscriptions == 2, "refused join changed the count: %+v", s.gw.Stats())
			b.send(leave("p", "rooms", "lobby"))
			poll.CheckFor(t, 5*time.Second, poll.Holds("b's place freed", func() bool { return s.gw.Stats().PresenceSubscriptions == 1 }))
			c.send(presenceJoin("p", true))
			must(t, c.nextPresence().Event.Type == "sync", "c joins once there is room")
		})
	}
}

// TestPresenceDeniedJoinGetsNoPages: page requests sent right after a join
// that is then denied (while its join handler runs, and after) get no
// member data: presence reaches a subscription only once its join was
// allowed and its sync sent.
func TestPresenceDeniedJoinGetsNoPages(t *testing.T) {
	s := presenceStack(t, gateway.Config{PresenceGrace: -1})
	release := make(chan struct{})
	joinTrigger(t, s, "", func(ctx context.Context, c engine.Call) ([]byte, error) {
		var in streamapi.Subscription
		_ = json.Unmarshal(c.Payload, &in)
		if in.Presence != nil && in.Presence.Identity == "eve" {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return []byte(`{"unauthorized":true}`), nil
		}
		return []byte(`{}`), nil
	})
	alice := s.dial(t, "/?user=alice", nil)
	alice.send(presenceJoin("p", map[string]any{"meta": map[string]any{"secret": "s3cr3t"}}))
	alice.nextPresence()
	eve := s.dial(t, "/?user=eve", nil)
	eve.send(presenceJoin("p", true))
	const n = 50
	page := map[string]any{"type": "presence", "data": map[string]any{"subscriptionId": "p"}}
	for range n {
		eve.send(page)
	}
	for i := 0; i < n; i++ {
		f := eve.read()
		must(t, !strings.Contains(f.Raw, "alice") && !strings.Contains(f.Raw, "s3cr3t"), "member data before the join was allowed: %s", f.Raw)
		must(t, f.Type == "error", "page request before the join was allowed: %s", f.Raw)
	}
	close(release)
	must(t, eve.readNot("presence").Type == "stream", "denied join")
	for range n {
		eve.send(page)
	}
	for i := 0; i < n; i++ {
		f := eve.read()
		must(t, !strings.Contains(f.Raw, "alice") && !strings.Contains(f.Raw, "s3cr3t"), "member data after a denied join: %s", f.Raw)
	}
}

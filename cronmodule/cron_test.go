package cronmodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/triggerapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseSchedule(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		expr, from, want string
	}{
		{"0 * * * * *", "2026-12-02T10:00:30Z", "2026-12-02T10:01:00Z"},
		{"0 0 2 * * *", "2026-12-02T10:00:00Z", "2026-12-03T02:00:00Z"},
		{"*/5 * * * * *", "2026-12-02T10:00:01Z", "2026-12-02T10:00:05Z"},
		{"0 */5 * * * * *", "2026-12-02T10:01:00Z", "2026-12-02T10:05:00Z"},
		{"0 0 0 1 1 * 2030", "2026-12-02T10:00:00Z", "2030-01-01T00:00:00Z"},
		{"0 0 0 1 1 * 2027-2029", "2028-06-01T00:00:00Z", "2029-01-01T00:00:00Z"},
		{"0 0 0 1 1 * 2026/2", "2026-06-01T00:00:00Z", "2028-01-01T00:00:00Z"},
		{"0 0 0 1 1 * 2025,2031", "2026-06-01T00:00:00Z", "2031-01-01T00:00:00Z"},
		{"0 0 0 1 1 * 2020", "2026-06-01T00:00:00Z", ""}, // never again
		{"@every 1m", "2026-12-02T10:00:00Z", "2026-12-02T10:01:00Z"},
	} {
		s, err := parseSchedule(c.expr, "")
		if err != nil {
			t.Fatalf("%q: %v", c.expr, err)
		}
		got := s.next(at(c.from))
		if c.want == "" {
			if !got.IsZero() {
				t.Errorf("%q after %s: %v, want none", c.expr, c.from, got)
			}
			continue
		}
		if !got.Equal(at(c.want)) {
			t.Errorf("%q after %s: %v, want %s", c.expr, c.from, got.UTC(), c.want)
		}
	}
	for _, bad := range []string{"", "* * * * *", "* * * * * * * *", "61 * * * * *", "* * * * * * 1900", "* * * * * * 2030-2020", "* * * * * * x", "* * * * * * 2030/0", "@sometimes"} {
		if _, err := parseSchedule(bad, ""); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// fleetNode is an engine with the cron module whose fires are claimed on
// JetStream.
type fleetNode struct {
	e *engine.Engine
	s *engine.Session
	m *Module
}

func startNode(t *testing.T, url string, claims Claimer, fn func(triggerapi.CronEvent)) *fleetNode {
	t.Helper()
	e := moduletest.Start(t, url)
	m, _ := New(Config{Claims: claims})
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := e.RegisterFunction("test::job", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		var p triggerapi.CronEvent
		if err := json.Unmarshal(c.Payload, &p); err != nil {
			return nil, err
		}
		fn(p)
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
	return &fleetNode{e: e, s: moduletest.Session(t, e), m: m}
}

// TestOncePerFleet: three engines on a three-node NATS cluster, each with
// a worker that registered the same every-second cron trigger. 20 fires
// happen 20 times: each scheduled second runs once, on one engine.
func TestOncePerFleet(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	fires := map[string][]int{}
	var total atomic.Int64
	nodes := make([]*fleetNode, 3)
	for i := range nodes {
		claims, err := OpenJetStreamClaims(ctx, natstest.ConnectURL(t, cl.URL(i)), 3)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = startNode(t, cl.URL(i), claims, func(p triggerapi.CronEvent) {
			if p.Trigger != "cron" || p.JobID != "tick" || p.ActualTime == "" {
				t.Errorf("payload %+v", p)
			}
			mu.Lock()
			fires[p.ScheduledTime] = append(fires[p.ScheduledTime], i)
			mu.Unlock()
			total.Add(1)
		})
	}
	for _, n := range nodes {
		if err := n.s.RegisterTrigger(ctx, engine.Trigger{ID: "tick", Type: "cron", FunctionID: "test::job", Config: json.RawMessage(`{"expression":"* * * * * *"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for total.Load() < 20 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d fires in a minute", total.Load())
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, n := range nodes {
		n.s.Close()
	}
	time.Sleep(1500 * time.Millisecond) // a fire in progress lands
	mu.Lock()
	defer mu.Unlock()
	var times []string
	for at, by := range fires {
		if len(by) != 1 {
			t.Errorf("scheduled time %s ran %d times (engines %v)", at, len(by), by)
		}
		times = append(times, at)
	}
	sort.Strings(times)
	t.Logf("%d fires, %d distinct seconds: %v", total.Load(), len(times), fires)
	if len(times) < 20 {
		t.Fatalf("%d distinct scheduled times, want at least 20", len(times))
	}
	// Consecutive seconds, none skipped.
	first, _ := time.Parse(time.RFC3339, times[0])
	for i, s := range times {
		if want := first.Add(time.Duration(i) * time.Second).UTC().Format(time.RFC3339); s != want {
			t.Fatalf("fire %d at %s, want %s: a second was skipped", i, s, want)
		}
	}
}

func TestTriggerConfigAndCondition(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	got := make(chan triggerapi.CronEvent, 10)
	n := startNode(t, ns.ClientURL(), LocalClaims{}, func(p triggerapi.CronEvent) { got <- p })
	var asked atomic.Int64
	n.e.RegisterFunction("test::no", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		asked.Add(1)
		return []byte("false"), nil
	}))
	n.e.RegisterFunction("test::fail", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		asked.Add(1)
		return nil, errors.New("broken")
	}))
	for _, bad := range []string{``, `"x"`, `{}`, `{"expression":"* * * *"}`, `{"expression":5}`, `{"expression":"* * * * * * 2001"}`, `{"expression":"* * * * * *","condition_function_id":""}x`} {
		err := n.s.RegisterTrigger(context.Background(), engine.Trigger{ID: "bad", Type: "cron", FunctionID: "test::job", Config: json.RawMessage(bad)})
		if e := engine.AsError(err); err == nil || e.Code != codes.InvalidArgument {
			t.Errorf("config %s: %v", bad, err)
		}
	}
	for i, cond := range []string{"test::no", "test::fail"} {
		cfg := fmt.Sprintf(`{"expression":"* * * * * *","condition_function_id":%q}`, cond)
		if err := n.s.RegisterTrigger(context.Background(), engine.Trigger{ID: fmt.Sprint("c", i), Type: "cron", FunctionID: "test::job", Config: json.RawMessage(cfg)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for asked.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if asked.Load() < 4 {
		t.Fatalf("conditions asked %d times in 5 s", asked.Load())
	}
	poll.CheckFor(t, 5*time.Second, poll.Holds("condition skips counted", func() bool { return n.m.Stats().Skips["condition"] >= 4 }))
	if st := n.m.Stats(); st.Fires != 0 {
		t.Fatalf("Stats() = %+v, want no fire run", st)
	}
	select {
	case p := <-got:
		t.Fatalf("a job ran although its condition said no: %+v", p)
	default:
	}
}

// The process's time zone never shifts a schedule: with TZ=Asia/Kolkata
// (UTC+5:30), a trigger for the current UTC hour fires within seconds. The
// test runs itself again in a child process with that TZ.
func TestSchedulesAreUTCWhateverTheProcessZone(t *testing.T) {
	if os.Getenv("TRINE_CRON_TZ_CHILD") == "" {
		t.Parallel()
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestSchedulesAreUTCWhateverTheProcessZone$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TZ=Asia/Kolkata", "TRINE_CRON_TZ_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child with TZ=Asia/Kolkata: %v\n%s", err, out)
		}
		return
	}
	if _, off := time.Now().Zone(); off != 5*3600+1800 {
		t.Fatalf("child process zone offset %d, want Asia/Kolkata's", off)
	}
	// Every second of the UTC hour 2 s from now (not the hour of now: at
	// hh:59:59 that hour has no second left).
	hour := time.Now().UTC().Add(2 * time.Second).Hour()
	firesInHour(t, fmt.Sprintf(`{"expression":"* * %d * * *"}`, hour), time.UTC, hour)
}

// firesInHour registers a cron trigger with cfg and waits 5 s for a fire
// scheduled in the given hour of loc.
func firesInHour(t *testing.T, cfg string, loc *time.Location, hour int) *fleetNode {
	t.Helper()
	ns := natstest.Start(t)
	got := make(chan triggerapi.CronEvent, 10)
	n := startNode(t, ns.ClientURL(), LocalClaims{}, func(p triggerapi.CronEvent) { got <- p })
	if err := n.s.RegisterTrigger(t.Context(), engine.Trigger{ID: "hourly", Type: "cron", FunctionID: "test::job", Config: json.RawMessage(cfg)}); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case p := <-got:
		at, err := time.Parse(time.RFC3339, p.ScheduledTime)
		if err != nil || at.In(loc).Hour() != hour {
			t.Fatalf("fired at %q, want hour %d in %s", p.ScheduledTime, hour, loc)
		}
	case <-timer.C:
		t.Fatalf("%s did not fire in 5 s (process zone %s)", cfg, time.Now().Format("MST"))
	}
	return n
}

// A trigger's timezone field sets the zone of its expression.
func TestTimezoneField(t *testing.T) {
	t.Parallel()
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Now().In(kolkata).Add(2 * time.Second).Hour()
	n := firesInHour(t, fmt.Sprintf(`{"expression":"* * %d * * *","timezone":"Asia/Kolkata"}`, hour), kolkata, hour)

	// next in the trigger's zone: 02:00 daily in New York is 07:00 UTC in
	// winter.
	s, err := parseSchedule("0 0 2 * * *", "America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	if next, want := s.next(from), time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next(%v) in America/New_York = %v, want %v", from, next.UTC(), want)
	}

	for _, bad := range []string{`"Mars/Olympus_Mons"`, `"Local"`, `"+05:30"`, `5`, `" UTC"`} {
		cfg := fmt.Sprintf(`{"expression":"* * * * * *","timezone":%s}`, bad)
		err := n.s.RegisterTrigger(t.Context(), engine.Trigger{ID: "badtz", Type: "cron", FunctionID: "test::job", Config: json.RawMessage(cfg)})
		if e := engine.AsError(err); err == nil || e.Code != codes.InvalidArgument {
			t.Errorf("timezone %s: %v, want invalid_argument", bad, err)
		}
	}
	_, ts := n.e.Triggers()
	for _, tr := range ts {
		if tr.ID == "badtz" {
			t.Errorf("a refused trigger is registered: %+v", tr)
		}
	}
}

// While the engine waits for JetStream (Waiting claims) cron triggers are
// accepted and do not fire; they fire once SetClaims gives working
// claims. Claims JetStream refused (Unavailable) refuse triggers.
func TestWaitingClaims(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	var fired atomic.Int64
	e := moduletest.Start(t, ns.ClientURL())
	m, _ := New(Config{Claims: Waiting{Err: errors.New("no JetStream yet")}})
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := e.RegisterFunction("test::job", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		fired.Add(1)
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
	s := moduletest.Session(t, e)
	tick := engine.Trigger{ID: "tick", Type: "cron", FunctionID: "test::job", Config: json.RawMessage(`{"expression":"* * * * * *"}`)}
	if err := s.RegisterTrigger(t.Context(), tick); err != nil {
		t.Fatalf("cron trigger while waiting: %v", err)
	}
	// Two scheduled seconds pass without a fire.
	wait := time.NewTimer(2100 * time.Millisecond)
	<-wait.C
	if n := fired.Load(); n != 0 {
		t.Fatalf("%d fires while waiting for JetStream", n)
	}
	if st := m.Stats(); st.Skips["no_jetstream"] < 2 || st.Fires != 0 {
		t.Fatalf("Stats() = %+v, want 2 skips waiting for JetStream and no fire", st)
	}
	m.SetClaims(LocalClaims{})
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for fired.Load() == 0 {
		select {
		case <-deadline.C:
			t.Fatal("no fire within 5 s of SetClaims")
		case <-poll.C:
		}
	}
	if st := m.Stats(); st.Fires < 1 {
		t.Fatalf("Stats() = %+v after a fire, want it counted", st)
	}
	m.SetClaims(Unavailable{Err: errors.New("replicas 3 on one server")})
	err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "other", Type: "cron", FunctionID: "test::job", Config: tick.Config})
	if ae := engine.AsError(err); err == nil || ae.Code != codes.Unavailable {
		t.Errorf("cron trigger with claims refused: %v, want unavailable", err)
	}
}

// TestSameIDOtherJobKeepsItsFires: a trigger that another owner
// registered under the same id on another engine, running another
// function, never takes a fire from the first: both run in the same
// seconds.
func TestSameIDOtherJobKeepsItsFires(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	ran := []map[string]bool{{}, {}}
	both := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for at := range ran[0] {
			if ran[1][at] {
				n++
			}
		}
		return n
	}
	var nodes []*fleetNode
	for i := range 2 {
		note := func(p triggerapi.CronEvent) { mu.Lock(); ran[i][p.ScheduledTime] = true; mu.Unlock() }
		claims, err := OpenJetStreamClaims(ctx, natstest.ConnectURL(t, ns.ClientURL()), 1)
		if err != nil {
			t.Fatal(err)
		}
		n := startNode(t, ns.ClientURL(), claims, note)
		fn := "test::job"
		if i == 1 {
			fn = "other::job"
			if err := n.e.RegisterFunction(fn, "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
				var p triggerapi.CronEvent
				_ = json.Unmarshal(c.Payload, &p)
				note(p)
				return nil, nil
			})); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.s.RegisterTrigger(ctx, engine.Trigger{ID: "nightly", Type: "cron", FunctionID: fn, Config: json.RawMessage(`{"expression":"* * * * * *"}`)}); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	for both() < 3 {
		select {
		case <-ctx.Done():
			t.Fatalf("seconds in which both ran: %d (%v); one trigger took the other's claims", both(), ran)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, n := range nodes {
		n.s.Close()
	}
}

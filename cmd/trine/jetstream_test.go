package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

// TestEngineStartsWithoutJetStream: on a NATS server without JetStream
// (--store file needs none) the engine listens at once; cron and queues
// wait, as /readyz and the log say, and their functions answer
// unavailable. When JetStream arrives (the server restarts with it on the
// same port), they come up by themselves.
func TestEngineStartsWithoutJetStream(t *testing.T) {
	t.Parallel()
	ns := natstest.StartOptions(t, server.Options{})
	port := ns.Addr().(*net.TCPAddr).Port
	began := time.Now()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-url", ns.ClientURL(), "--store", "file")...)
	took := time.Since(began)
	t.Logf("listening after %v without JetStream", took)
	if took > 3*time.Second {
		t.Errorf("the engine took %v to listen on a NATS without JetStream, want under 3 s", took)
	}
	code, body := get(t, e.http+"/readyz")
	if code != 200 || !strings.Contains(body, `"status":"ok"`) || !strings.Contains(body, `"cron":"waiting_for_jetstream"`) ||
		!strings.Contains(body, `"queues":"waiting_for_jetstream"`) || !strings.Contains(body, `"presence":"waiting_for_jetstream"`) {
		t.Errorf("GET /readyz = %d %s, want 200 with cron, queues and presence waiting_for_jetstream", code, body)
	}
	cli := func(fn, in string) result {
		t.Helper()
		return runTrine(t, testEnv("TRINE_ENGINE="+e.grpc), "", "trigger", fn, in)
	}
	for fn, in := range map[string]string{
		"engine::queue::enqueue": `{"queue":"q","function_id":"f","payload":1}`,
		"iii::durable::publish":  `{"topic":"t","data":1}`,
		"iii::queue::redrive":    `{"queue":"q"}`,
	} {
		if r := cli(fn, in); r.code != 1 || !strings.Contains(r.stderr, `"code":"unavailable"`) || !strings.Contains(r.stderr, "JetStream") {
			t.Errorf("%s while waiting = exit %d %s%s, want unavailable naming JetStream", fn, r.code, r.stdout, r.stderr)
		}
	}
	// Triggers registered while waiting are kept, and start when
	// JetStream arrives.
	w := connectWorker(t, e.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	ran := make(chan string, 100)
	for _, fn := range []string{"job::tick", "job::sub"} {
		if err := w.RegisterFunction(ctx, fn, func(context.Context, json.RawMessage) (any, error) {
			select {
			case ran <- fn:
			default:
			}
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tr := range []trine.Trigger{
		{ID: "tick", Type: "cron", FunctionID: "job::tick", Config: map[string]string{"expression": "* * * * * *"}},
		{ID: "sub", Type: "durable:subscriber", FunctionID: "job::sub", Config: map[string]string{"topic": "t"}},
	} {
		if err := w.RegisterTrigger(ctx, tr); err != nil {
			t.Errorf("%s trigger while waiting: %v", tr.Type, err)
		}
	}

	// JetStream arrives.
	ns.Shutdown()
	ns.WaitForShutdown()
	natstest.StartOptions(t, server.Options{Port: port, JetStream: true})
	poll.CheckFor(t, 30*time.Second, poll.Holds("cron and queues up in /readyz", func() bool {
		_, body = get(t, e.http+"/readyz")
		return strings.Contains(body, `"cron":"up"`) && strings.Contains(body, `"queues":"up"`) && strings.Contains(body, `"presence":"up"`)
	}))
	if r := cli("iii::durable::publish", `{"topic":"t","data":1}`); r.code != 0 || !strings.Contains(r.stdout, "messageReceiptId") {
		t.Errorf("durable publish once up = exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	seen := map[string]bool{}
	for !seen["job::tick"] || !seen["job::sub"] {
		select {
		case fn := <-ran:
			seen[fn] = true
		case <-ctx.Done():
			t.Fatalf("once JetStream is up, ran only %v", seen)
		}
	}
	// One warning when waiting, one line when up, per part.
	logs := e.stderr.String()
	for _, part := range []string{"cron", "queues", "presence"} {
		if n := strings.Count(logs, "part="+part+" state=waiting_for_jetstream"); n != 1 {
			t.Errorf("%d log lines say %s waits, want 1:\n%s", n, part, logs)
		}
		if n := strings.Count(logs, "part="+part+" state=up"); n != 1 {
			t.Errorf("%d log lines say %s is up, want 1:\n%s", n, part, logs)
		}
	}
}

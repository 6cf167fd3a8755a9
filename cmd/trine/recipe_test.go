package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

// recipePort is a port of the fleet recipe: "127.0.0.1:PORT" or
// nats-server's "-p PORT".
var recipePort = regexp.MustCompile(`(127\.0\.0\.1:|-p )(\d+)\b`)

// TestFleetRecipeAsDocumented runs the "Running a fleet" commands of the
// documentation (docs/fleet.md, linked from the README) as written (three
// nats-server nodes, three engines, two gateways), each of the recipe's
// ports replaced by a free one, with this checkout's trine and the
// nats-server of go.mod on PATH. It checks that they all listen, that a
// call made through engine A reaches a function served on engine C, that
// the browsers of both gateways get a write made through engine C, and
// that once engine A stops both gateways stay ready and their browsers get
// the writes made through engine B.
func TestFleetRecipeAsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/fleet.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		for _, l := range strings.Split(block[1], "\n") {
			if strings.HasPrefix(l, "nats-server ") || strings.HasPrefix(l, "trine ") || strings.HasPrefix(l, "NATS=") {
				lines = append(lines, l)
			}
		}
	}
	if len(lines) != 9 || !strings.HasPrefix(lines[3], "NATS=") {
		t.Fatalf("found %d recipe commands in docs/fleet.md, want 3 nats-server, NATS=, 3 engines and 2 gateways:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	ports := freeRecipePorts(t, lines)
	for i, l := range lines {
		lines[i] = recipePort.ReplaceAllStringFunc(l, func(m string) string {
			sm := recipePort.FindStringSubmatch(m)
			return sm[1] + ports[sm[2]]
		})
	}
	at := func(docAddr string) string { // the test's address for one of the recipe
		host, port, _ := net.SplitHostPort(docAddr)
		return net.JoinHostPort(host, ports[port])
	}

	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "nats-server"), "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	if err := os.Symlink(trineBin, filepath.Join(bin, "trine")); err != nil {
		t.Fatal(err)
	}
	// The user's environment: no TRINE_* settings (not even the tests'
	// free iii port), so that the commands must stand on their own.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRINE_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+bin+":"+os.Getenv("PATH"), lines[3])
	dir := t.TempDir()
	var out syncBuffer
	var procs []*exec.Cmd
	var exited []chan struct{}
	for i, l := range lines {
		if i == 3 {
			continue
		}
		// One process per command, so that the test can stop engine A.
		cmd := exec.Command("bash", "-c", "exec "+strings.TrimSuffix(strings.TrimSpace(l), "&"))
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		procs, exited = append(procs, cmd), append(exited, done)
	}
	t.Cleanup(func() {
		for i := len(procs) - 1; i >= 0; i-- { // gateways and engines before NATS
			_ = procs[i].Process.Signal(syscall.SIGTERM)
			select {
			case <-exited[i]:
			case <-time.After(20 * time.Second):
				_ = procs[i].Process.Kill()
				<-exited[i]
			}
		}
		if t.Failed() {
			t.Logf("recipe output:\n%s", out.String())
		}
	})
	poll.CheckFor(t, 120*time.Second, poll.Holds("three engines and two gateways listening", func() bool {
		for i, done := range exited {
			select {
			case <-done:
				t.Fatalf("%q exited", lines[i+min(i/3, 1)])
			default:
			}
		}
		return strings.Count(out.String(), "trine engine dev listening:") == 3 && strings.Count(out.String(), "trine gateway dev listening:") == 2
	}))

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	c := trine.RegisterWorker(at("127.0.0.1:49154"), trine.WithName("recipe-c"), trine.WithCloseTimeout(time.Second))
	defer c.Close()
	if err := c.RegisterFunction(ctx, "recipe::hello", func(context.Context, json.RawMessage) (any, error) { return "from C", nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	a := connectWorker(t, at("127.0.0.1:49134"))
	var got json.RawMessage
	poll.CheckFor(t, 20*time.Second, poll.Holds("a call through engine A to reach engine C", func() bool {
		got, err = a.Trigger(ctx, "recipe::hello", nil)
		return err == nil
	}))
	if string(got) != `"from C"` {
		t.Fatalf("call through A: %s", got)
	}
	ready := func(what string) {
		t.Helper()
		for _, h := range []string{"127.0.0.1:4101", "127.0.0.1:4102"} {
			poll.CheckFor(t, 30*time.Second, poll.Holds("gateway "+h+" ready "+what, func() bool {
				code, _ := get(t, "http://"+at(h)+"/readyz")
				return code == 200
			}))
		}
	}
	// The gateways started with the engines: they answer 503 until they
	// have connected to one.
	ready("at start")
	var subs []*trine.Subscription
	for _, g := range []string{"127.0.0.1:4001", "127.0.0.1:4002"} {
		sub, err := trine.Subscribe(ctx, "ws://"+at(g), "recipe", "g")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		if ev := <-sub.Events(); ev.Type != "sync" {
			t.Fatalf("gateway %s first frame %+v", g, ev)
		}
		subs = append(subs, sub)
	}
	write := func(through *trine.Worker, engine string, n int) {
		t.Helper()
		if _, err := through.Trigger(ctx, "stream::set", map[string]any{"stream_name": "recipe", "group_id": "g", "item_id": "i", "data": n}); err != nil {
			t.Fatalf("write through engine %s: %v", engine, err)
		}
		for i, sub := range subs {
			select {
			case ev := <-sub.Events():
				if ev.Type == "sync" || !bytes.Equal(ev.Data, []byte(strconv.Itoa(n))) {
					t.Fatalf("gateway %d got %+v after a write of %d through engine %s", i+1, ev, n, engine)
				}
			case <-ctx.Done():
				t.Fatalf("gateway %d never delivered the write through engine %s", i+1, engine)
			}
		}
	}
	write(c, "C", 1)
	write(a, "A", 2)

	// Engine A stops: the gateways move to another engine of their list.
	engineA := procs[3]
	if !strings.Contains(strings.Join(engineA.Args, " "), "--grpc-addr "+at("127.0.0.1:49134")) {
		t.Fatalf("process %v is not engine A", engineA.Args)
	}
	_ = engineA.Process.Signal(syscall.SIGTERM)
	b := connectWorker(t, at("127.0.0.1:49144"))
	ready("after engine A stopped")
	write(b, "B", 3)
}

// freeRecipePorts maps each port of the recipe to a free one.
func freeRecipePorts(t *testing.T, lines []string) map[string]string {
	t.Helper()
	ports := map[string]string{}
	var held []net.Listener
	for _, l := range lines {
		for _, m := range recipePort.FindAllStringSubmatch(l, -1) {
			if _, ok := ports[m[2]]; ok {
				continue
			}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, lis) // held until all are chosen: no two alike
			ports[m[2]] = strconv.Itoa(lis.Addr().(*net.TCPAddr).Port)
		}
	}
	for _, l := range held {
		l.Close()
	}
	if len(ports) < 20 {
		t.Fatalf("found %d ports in the recipe, want the 6 of NATS, 12 of the engines and 4 of the gateways", len(ports))
	}
	return ports
}

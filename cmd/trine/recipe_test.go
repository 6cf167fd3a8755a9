package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	trine "github.com/trinehq/trine/worker-sdk"
)

// TestFleetRecipeAsDocumented runs the "Running a fleet" commands of the
// documentation (docs/fleet.md, linked from the README) as
// written (three nats-server nodes, three engines, two gateways, on the
// ports the README gives), with this checkout's trine and the nats-server
// of go.mod on PATH, and checks that they all listen, that a call made
// through engine A reaches a function served on engine C, and that a
// browser of gateway 1 gets a write made through engine A.
func TestFleetRecipeAsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/fleet.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	var lines []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		for _, l := range strings.Split(block[1], "\n") {
			if strings.HasPrefix(l, "nats-server ") || strings.HasPrefix(l, "trine ") || strings.HasPrefix(l, "NATS=") {
				lines = append(lines, l)
			}
		}
	}
	if len(lines) != 9 {
		t.Fatalf("found %d recipe commands in docs/fleet.md, want 3 nats-server, NATS=, 3 engines and 2 gateways:\n%s", len(lines), strings.Join(lines, "\n"))
	}

	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "nats-server"), "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	if err := os.Symlink(trineBin, filepath.Join(bin, "trine")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("bash", "-c", "set -e\n"+strings.Join(lines, "\n")+"\nwait\n")
	cmd.Dir = dir
	// The user's environment: no TRINE_* settings (not even the tests'
	// free iii port), so that the commands must stand on their own.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRINE_") && !strings.HasPrefix(kv, "PATH=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PATH="+bin+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("recipe output:\n%s", out.String())
		}
	})
	waitFor(t, 60*time.Second, "three engines and two gateways listening", func() bool {
		return strings.Count(out.String(), "trine engine dev listening:") == 3 && strings.Count(out.String(), "trine gateway dev listening:") == 2
	})

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := trine.RegisterWorker("127.0.0.1:49154", trine.WithName("recipe-c"), trine.WithCloseTimeout(time.Second))
	defer c.Close()
	if err := c.RegisterFunction(ctx, "recipe::hello", func(context.Context, json.RawMessage) (any, error) { return "from C", nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	a := connectWorker(t, "127.0.0.1:49134")
	var got json.RawMessage
	waitFor(t, 20*time.Second, "a call through engine A to reach engine C", func() bool {
		got, err = a.Trigger(ctx, "recipe::hello", nil)
		return err == nil
	})
	if string(got) != `"from C"` {
		t.Fatalf("call through A: %s", got)
	}
	// The gateways started with the engines: they answer 503 until they
	// have connected to theirs.
	waitFor(t, 20*time.Second, "gateway 1 ready", func() bool {
		code, _ := get(t, "http://127.0.0.1:4101/readyz")
		return code == 200
	})
	sub, err := trine.Subscribe(ctx, "ws://127.0.0.1:4001", "recipe", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if ev := <-sub.Events(); ev.Type != "sync" {
		t.Fatalf("gateway 1 first frame %+v", ev)
	}
	if _, err := a.Trigger(ctx, "stream::set", map[string]any{"stream_name": "recipe", "group_id": "g", "item_id": "i", "data": 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-sub.Events():
		if ev.Type != "create" || !bytes.Equal(ev.Data, []byte("1")) {
			t.Fatalf("gateway 1 got %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("gateway 1 never delivered the write")
	}
}

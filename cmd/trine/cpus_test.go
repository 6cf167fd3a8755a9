package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
)

var gomaxprocsMetric = regexp.MustCompile(`(?m)^go_sched_gomaxprocs_threads (\d+)$`)

// gomaxprocs is the GOMAXPROCS a trine process reports on /metrics.
func gomaxprocs(t *testing.T, httpURL string) string {
	t.Helper()
	_, body := get(t, httpURL+"/metrics")
	if m := gomaxprocsMetric.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}

// TestEngineSharesTheCPUsWithBusyPeers: with --cpus auto, an engine that
// shares its two CPUs with another busy trine server plans for one of
// them (GOMAXPROCS 1), not for every CPU as Go's default does; --cpus N
// sets N.
func TestEngineSharesTheCPUsWithBusyPeers(t *testing.T) {
	t.Parallel()
	if runtime.NumCPU() != 2 {
		t.Skipf("the busy peer takes one CPU of two; this machine has %d", runtime.NumCPU())
	}
	fixed := startEngine(t, trineBin, testEnv(), engineArgs(t, "--store", "memory", "--cpus", "3")...)
	poll.CheckFor(t, startTimeout, poll.Holds("GOMAXPROCS 3 with --cpus 3", func() bool { return gomaxprocs(t, fixed.http) == "3" }))

	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--store", "memory")...)
	// A busy peer: a process named trine serving as a gateway, spinning
	// (a shell through a link named trine, running the script "gateway").
	dir := t.TempDir()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	if err := os.Symlink(sh, filepath.Join(dir, "trine")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gateway"), []byte("while :; do :; done\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	peer := exec.Command(filepath.Join(dir, "trine"), "gateway")
	peer.Dir = dir
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = peer.Process.Kill()
		_ = peer.Wait()
	})
	poll.CheckFor(t, 4*cpuEvery+startTimeout, poll.Holds("GOMAXPROCS 1 beside a busy peer", func() bool { return gomaxprocs(t, e.http) == "1" }))
}

// TestLooksAtTheHostWithinABudget: a look at the host reads a file of
// every process, so on a host of many processes the looks space out, to
// take at most a five-hundredth of a CPU, and never come more than once
// a second.
func TestLooksAtTheHostWithinABudget(t *testing.T) {
	for _, c := range []struct{ took, want time.Duration }{
		{0, time.Second},
		{time.Millisecond, time.Second},
		{2 * time.Millisecond, time.Second},
		{10 * time.Millisecond, 5 * time.Second},
		{80 * time.Millisecond, 40 * time.Second},
	} {
		if got := nextLook(c.took); got != c.want {
			t.Errorf("after a look of %v the next waits %v, want %v", c.took, got, c.want)
		}
	}
}

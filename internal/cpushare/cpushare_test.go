package cpushare

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeHost is a /proc and a cgroup tree in a directory.
type fakeHost struct {
	t    *testing.T
	host Host
}

func newFakeHost(t *testing.T, cgroup string) *fakeHost {
	dir := t.TempDir()
	f := &fakeHost{t: t, host: Host{Proc: filepath.Join(dir, "proc"), Cgroup: filepath.Join(dir, "cgroup"), Self: 100}}
	f.proc(100, "trine", "engine", "0-1", 0)
	f.write(filepath.Join(f.host.Proc, "100", "cgroup"), cgroup)
	return f
}

func (f *fakeHost) write(name, content string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// proc adds (or updates) a process: its comm, its trine command, its
// CPUs and its CPU time in clock ticks.
func (f *fakeHost) proc(pid int, comm, cmd, cpus string, ticks int) {
	dir := filepath.Join(f.host.Proc, fmt.Sprint(pid))
	f.write(filepath.Join(dir, "comm"), comm+"\n")
	f.write(filepath.Join(dir, "cmdline"), "/usr/bin/"+comm+"\x00"+cmd+"\x00--log-level\x00warn\x00")
	f.write(filepath.Join(dir, "status"), "Name:\t"+comm+"\nCpus_allowed:\t3\nCpus_allowed_list:\t"+cpus+"\nMems_allowed_list:\t0\n")
	// utime is field 14, stime field 15.
	f.write(filepath.Join(dir, "stat"), fmt.Sprintf("%d (%s) S 1 1 1 0 -1 4194560 100 0 0 0 %d %d 0 0 20 0 5 0 100 0 0\n", pid, comm, ticks, ticks))
}

// look is a Sizer's look after one second.
func look(s *Sizer, at *time.Time) Share {
	*at = at.Add(time.Second)
	return s.CPUs()
}

// TestPeersShareTheCPUs: two busy gateways and an idle engine on two CPUs
// plan for one CPU each; a process of another program (even one whose
// name holds "trine) "), a trine CLI command, an idle peer and a peer
// pinned to other CPUs do not count.
func TestPeersShareTheCPUs(t *testing.T) {
	f := newFakeHost(t, "0::/\n")
	f.proc(101, "trine", "gateway", "0-1", 0)
	f.proc(102, "trine", "gateway", "0-1", 0)
	f.proc(103, "nats-server", "gateway", "0-1", 0)
	f.proc(104, "trine", "trigger", "0-1", 0)
	f.proc(105, "trine", "gateway", "2-3", 0)
	f.proc(106, "trine) x", "gateway", "0-1", 0)
	s := NewSizer(f.host)
	at := time.Unix(1000, 0)
	s.now = func() time.Time { return at }

	if sh := look(s, &at); sh != (Share{Affinity: 2, Peers: 1, CPUs: 2}) {
		t.Fatalf("first look: %+v, want all 2 CPUs (no CPU use known yet)", sh)
	}
	// One second later: both gateways used 60% of a CPU (30+30 ticks),
	// the others too, but they do not count; the engine itself is idle.
	f.proc(101, "trine", "gateway", "0-1", 30)
	f.proc(102, "trine", "gateway", "0-1", 30)
	f.proc(103, "nats-server", "gateway", "0-1", 30)
	f.proc(104, "trine", "trigger", "0-1", 30)
	f.proc(105, "trine", "gateway", "2-3", 30)
	f.proc(106, "trine) x", "gateway", "0-1", 30)
	if sh := look(s, &at); sh != (Share{Affinity: 2, Peers: 3, CPUs: 1}) {
		t.Fatalf("two busy gateways: %+v, want 3 peers and 1 CPU", sh)
	}
	// A gateway below a twentieth of a CPU is not a peer.
	f.proc(101, "trine", "gateway", "0-1", 32)
	f.proc(102, "trine", "gateway", "0-1", 60)
	if sh := look(s, &at); sh != (Share{Affinity: 2, Peers: 2, CPUs: 1}) {
		t.Fatalf("one busy gateway: %+v, want 2 peers and 1 CPU", sh)
	}
	// Both idle, or gone: every CPU again.
	if err := os.RemoveAll(filepath.Join(f.host.Proc, "102")); err != nil {
		t.Fatal(err)
	}
	if sh := look(s, &at); sh != (Share{Affinity: 2, Peers: 1, CPUs: 2}) {
		t.Fatalf("no busy peer: %+v, want 2 CPUs", sh)
	}
}

// TestQuotaLowersTheCPUs: a cgroup CPU quota, on the process's cgroup or
// an ancestor, v2 or v1, caps the CPUs, rounded up and at least 1 (Go's
// runtime rounds a quota below 2 up to 2).
func TestQuotaLowersTheCPUs(t *testing.T) {
	for _, c := range []struct {
		name, cgroup string
		files        map[string]string
		quota        float64
		cpus         int
	}{
		{"v2 own", "0::/a/b\n", map[string]string{"a/b/cpu.max": "50000 100000\n", "a/cpu.max": "max 100000\n"}, 0.5, 1},
		{"v2 ancestor", "0::/a/b\n", map[string]string{"a/b/cpu.max": "max 100000\n", "a/cpu.max": "150000 100000\n"}, 1.5, 2},
		{"v2 none", "0::/a\n", map[string]string{"a/cpu.max": "max 100000\n"}, 0, 2},
		{"v2 container root", "0::/kubepods/pod1/c1\n", map[string]string{"cpu.max": "100000 100000\n"}, 1, 1},
		{"v1", "4:memory:/x\n2:cpu,cpuacct:/docker/c1\n", map[string]string{
			"cpu,cpuacct/docker/c1/cpu.cfs_quota_us": "100000\n", "cpu,cpuacct/docker/c1/cpu.cfs_period_us": "100000\n",
			"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 1, 1},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			f := newFakeHost(t, c.cgroup)
			for name, content := range c.files {
				f.write(filepath.Join(f.host.Cgroup, name), content)
			}
			sh := NewSizer(f.host).CPUs()
			if sh.Quota != c.quota || sh.CPUs != c.cpus || sh.Affinity != 2 {
				t.Errorf("%+v, want quota %v and %d CPUs of 2", sh, c.quota, c.cpus)
			}
		})
	}
}

// TestSystem: on the real host the process finds its own CPUs.
func TestSystem(t *testing.T) {
	sh := NewSizer(System()).CPUs()
	if sh.Affinity < 1 || sh.CPUs < 1 || sh.Peers != 1 {
		t.Errorf("%+v: want at least 1 CPU and no peer at the first look", sh)
	}
}

func BenchmarkLook(b *testing.B) {
	s := NewSizer(System())
	for b.Loop() {
		s.CPUs()
	}
}

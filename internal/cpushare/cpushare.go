// Package cpushare works out how many CPUs a trine server should size
// its Go scheduler (GOMAXPROCS) and its pools for: the CPUs its affinity
// mask allows, lowered to its cgroup's CPU quota, then split with the
// other busy trine servers (engines and gateways) that run on the same
// CPUs.
//
// Go's runtime already takes the affinity mask and the cgroup quota into
// GOMAXPROCS, but it rounds a quota below 2 CPUs up to 2, and it cannot
// know that two gateways and an engine share one box: each would plan for
// every CPU, and their writers would take turns on too few cores, each
// turn finding fewer frames to write. A peer counts while it uses at
// least a twentieth of a CPU, so an idle engine next to busy gateways costs
// them nothing.
//
// Everything is read from /proc and the cgroup file system (Host names
// their roots, for tests): no file is written and nothing is shared
// between the processes.
//
// Concurrency: a Sizer is for one goroutine. Host is read-only and safe
// to share.
package cpushare

import (
	"bytes"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BusyShare is the least share of one CPU a peer must have used since the
// last look to count as a peer.
const BusyShare = 0.05

// clockTicks is the unit of the CPU times in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux port).
const clockTicks = 100

// Host is where the process's facts are read.
type Host struct {
	Proc   string // /proc
	Cgroup string // /sys/fs/cgroup
	Self   int    // the process's pid
}

// System is the running process on this machine.
func System() Host { return Host{Proc: "/proc", Cgroup: "/sys/fs/cgroup", Self: os.Getpid()} }

// Share is what a Sizer found.
type Share struct {
	Affinity int     // CPUs of the affinity mask (0: unknown)
	Quota    float64 // CPUs of the cgroup quota (0: none)
	Peers    int     // busy trine servers on these CPUs, this one included
	CPUs     int     // what to plan for: ceil(min(Affinity, Quota) / Peers), at least 1
}

// Sizer looks at the host again each time CPUs is called and remembers
// the peers' CPU times for the next look.
type Sizer struct {
	host  Host
	prev  map[int]uint64 // CPU ticks of each candidate peer at the last look
	last  time.Time
	now   func() time.Time
	fresh bool // prev holds a look
}

// NewSizer returns a Sizer of host.
func NewSizer(host Host) *Sizer {
	return &Sizer{host: host, prev: map[int]uint64{}, now: time.Now}
}

// CPUs looks at the host. The first look knows no peer's CPU use yet, so
// it counts none.
func (s *Sizer) CPUs() Share {
	h := s.host
	self := h.cpuList(h.Self)
	sh := Share{Affinity: len(self), Quota: h.quota(), Peers: 1}
	cpus := float64(sh.Affinity)
	if cpus == 0 {
		cpus = float64(runtime.NumCPU())
	}
	if sh.Quota > 0 && sh.Quota < cpus {
		cpus = sh.Quota
	}
	now := s.now()
	elapsed := now.Sub(s.last).Seconds()
	ticks := map[int]uint64{}
	for pid, t := range h.peers() {
		ticks[pid] = t
		prev, seen := s.prev[pid]
		if !s.fresh || !seen || elapsed <= 0 || t < prev {
			continue
		}
		if float64(t-prev)/clockTicks/elapsed < BusyShare {
			continue
		}
		if len(self) > 0 && !overlaps(self, h.cpuList(pid)) {
			continue
		}
		sh.Peers++
	}
	s.prev, s.last, s.fresh = ticks, now, true
	sh.CPUs = max(1, int(math.Ceil(cpus/float64(sh.Peers)-1e-9)))
	return sh
}

// serverCommands are the trine commands that count as peers.
var serverCommands = []string{"engine", "gateway"}

// peers are the CPU times (in clock ticks) of the other processes of
// this program serving as an engine or a gateway. Each process costs one
// read of /proc/<pid>/comm (the cheapest of its files); only those named
// as this one have their command line and CPU time read.
func (h Host) peers() map[int]uint64 {
	buf := make([]byte, 1024)
	self, ok := readSmall(filepath.Join(h.Proc, strconv.Itoa(h.Self), "comm"), buf)
	if !ok {
		return nil
	}
	entries, err := os.ReadDir(h.Proc)
	if err != nil {
		return nil
	}
	out := map[int]uint64{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == h.Self {
			continue
		}
		dir := filepath.Join(h.Proc, e.Name())
		if comm, ok := readSmall(filepath.Join(dir, "comm"), buf); !ok || comm != self {
			continue
		}
		args, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil {
			continue
		}
		if argv := strings.Split(string(args), "\x00"); len(argv) < 2 || !slices.Contains(serverCommands, argv[1]) {
			continue
		}
		if st, ok := readStat(filepath.Join(dir, "stat"), buf); ok && st.comm == self {
			out[pid] = st.ticks
		}
	}
	return out
}

// stat is what peers needs of /proc/<pid>/stat.
type stat struct {
	comm  string // the command's name
	ticks uint64 // user and system CPU time, in clock ticks
}

// readSmall reads a small file with one read into buf, without its
// trailing newline.
func readSmall(file string, buf []byte) (string, bool) {
	f, err := os.Open(file)
	if err != nil {
		return "", false
	}
	n, err := f.Read(buf)
	_ = f.Close()
	if err != nil {
		return "", false
	}
	return strings.TrimSuffix(string(buf[:n]), "\n"), true
}

// readStat reads a /proc/<pid>/stat file using buf.
func readStat(file string, buf []byte) (stat, bool) {
	v, ok := readSmall(file, buf)
	if !ok {
		return stat{}, false
	}
	b := []byte(v)
	// The name, in parentheses, may hold spaces and parentheses: fields
	// count from the last ')'. utime and stime are fields 14 and 15.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return stat{}, false
	}
	f2 := strings.Fields(string(b[end+1:]))
	if len(f2) < 13 {
		return stat{}, false
	}
	u, err1 := strconv.ParseUint(f2[11], 10, 64)
	st, err2 := strconv.ParseUint(f2[12], 10, 64)
	if err1 != nil || err2 != nil {
		return stat{}, false
	}
	return stat{comm: string(b[open+1 : end]), ticks: u + st}, true
}

// cpuList is the set of CPUs pid may run on (Cpus_allowed_list), nil
// if unknown.
func (h Host) cpuList(pid int) map[int]bool {
	b, err := os.ReadFile(filepath.Join(h.Proc, strconv.Itoa(pid), "status"))
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "Cpus_allowed_list:")
		if !ok {
			continue
		}
		set := map[int]bool{}
		for _, r := range strings.Split(strings.TrimSpace(v), ",") {
			lo, hi, isRange := strings.Cut(r, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil
			}
			b := a
			if isRange {
				if b, err = strconv.Atoi(hi); err != nil || b < a {
					return nil
				}
			}
			for c := a; c <= b; c++ {
				set[c] = true
			}
		}
		return set
	}
	return nil
}

func overlaps(a, b map[int]bool) bool {
	if b == nil {
		return true // unknown: assume it competes
	}
	for c := range a {
		if b[c] {
			return true
		}
	}
	return false
}

// quota is the CPU quota of the process's cgroup and its ancestors (the
// least of them), in CPUs; 0: none. cgroup v2 (cpu.max) and v1
// (cpu.cfs_quota_us over cpu.cfs_period_us) both count.
func (h Host) quota() float64 {
	b, err := os.ReadFile(filepath.Join(h.Proc, strconv.Itoa(h.Self), "cgroup"))
	if err != nil {
		return 0
	}
	least := 0.0
	take := func(q float64) {
		if q > 0 && (least == 0 || q < least) {
			least = q
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			walk(h.Cgroup, parts[2], func(dir string) { take(readV2(filepath.Join(dir, "cpu.max"))) })
		case slices.Contains(strings.Split(parts[1], ","), "cpu"):
			for _, mount := range []string{parts[1], "cpu", "cpu,cpuacct"} {
				root := filepath.Join(h.Cgroup, mount)
				if _, err := os.Stat(root); err != nil {
					continue
				}
				walk(root, parts[2], func(dir string) { take(readV1(dir)) })
				break
			}
		}
	}
	return least
}

// walk calls f on the directory of cgroup p under root and on each of its
// ancestors up to root, skipping those that are not there (a container
// sees its own cgroup at root).
func walk(root, p string, f func(dir string)) {
	for p = path.Clean("/" + p); ; p = path.Dir(p) {
		dir := filepath.Join(root, filepath.FromSlash(p))
		if _, err := os.Stat(dir); err == nil {
			f(dir)
		}
		if p == "/" {
			return
		}
	}
}

// readV2 reads a cgroup v2 cpu.max: "max 100000" or "50000 100000".
func readV2(file string) float64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	q, err1 := strconv.ParseFloat(f[0], 64)
	p, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0
	}
	return q / p
}

// readV1 reads a cgroup v1 directory's CFS quota (-1: none).
func readV1(dir string) float64 {
	read := func(name string) float64 {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return 0
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		if err != nil {
			return 0
		}
		return v
	}
	q, p := read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")
	if q <= 0 || p <= 0 {
		return 0
	}
	return q / p
}

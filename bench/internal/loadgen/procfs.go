package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const clockTick = 10 * time.Millisecond // USER_HZ is 100 on Linux

// CPUTime is the process's user+system CPU time from /proc/<pid>/stat.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may contain spaces: fields after its
	// closing parenthesis start at field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// WriteCalls is the number of write-like system calls (write, writev,
// sendmsg …) the process has made, from /proc/<pid>/io.
func WriteCalls(pid int) (int64, error) {
	return procField(pid, "io", "syscw:")
}

// RSSKiB is VmRSS from /proc/<pid>/status.
func RSSKiB(pid int) (int64, error) {
	return procField(pid, "status", "VmRSS:")
}

// procField is the number after key (a line's prefix) in /proc/<pid>/file.
func procField(pid int, file, key string) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), file))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/%s: no %s", pid, file, strings.TrimSuffix(key, ":"))
}

// MachineBusy is the CPU time all CPUs spent not idle, from /proc/stat (0
// if it cannot be read).
func MachineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * clockTick
}

// SelfCPU is this process's user+system CPU time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CheckFDs raises the open-files limit so that this process can hold the
// given number of sockets, and fails if it cannot. Go already sets the
// soft limit to the hard one at start (so does every Go server, trine
// included); past the hard limit, only a process allowed to raise it
// (CAP_SYS_RESOURCE) gets more. Child processes inherit the raised limits.
func CheckFDs(sockets int) error {
	need := uint64(sockets + 64)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || need <= rl.Cur {
		return nil
	}
	if need <= rl.Max {
		rl.Cur = need
	} else {
		rl.Cur, rl.Max = need, need
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("%d sockets need about %d file descriptors; %s, and raising it failed: %v", sockets, need, fdLimit(), err)
	}
	return nil
}

// fdLimit describes RLIMIT_NOFILE.
func fdLimit() string {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return "open-files limit unknown"
	}
	return fmt.Sprintf("open-files limit soft %d, hard %d", rl.Cur, rl.Max)
}

//go:build unix

package enginetest

import (
	"syscall"
	"time"
)

// SelfCPU is this process's user and system CPU time, which benchmarks
// report per operation: the figure a loaded machine inflates least.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package loadgen

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// StartProfile starts a CPU profile into path; the returned func stops it.
func StartProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close cpu profile:", err)
		}
	}, nil
}

// CheckGoroutines waits up to d for the goroutine count to fall back to
// want, and otherwise fails with every goroutine's stack.
func CheckGoroutines(want int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			return fmt.Errorf("%d goroutines still running after the run, want %d:\n%s", runtime.NumGoroutine(), want, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

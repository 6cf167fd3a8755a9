//go:build linux && !race

package gateway

import (
	"syscall"
	"unsafe"
)

// rawWriteFD is write(2) on a non-blocking socket, without telling the
// scheduler: it returns at once (EAGAIN when the socket's buffer is
// full), so the P need not be handed off, and a pool worker that writes
// thousands of sockets in a row does not keep sysmon waking every 20 µs
// to look at a P "in a system call" (4% of a gateway's CPU at 10,000
// subscribers and 4 msgs/s). The pool worker yields between batches
// instead (writerPool.work), or the goroutines that queue frames would
// run less and a write carry fewer of them. p is not empty.
//
// Built with the race detector, it is syscall.Write (rawwrite_race.go),
// which tells the detector that what was written happens before what
// the peer reads.
func rawWriteFD(fd uintptr, p []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

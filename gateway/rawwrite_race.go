//go:build !linux || race

package gateway

import "syscall"

// rawWriteFD is rawwrite.go's, through syscall.Write: with the race
// detector, its annotations make what a socket's peer reads (a test's
// client) happen after what was written, as the detector sees it; off
// Linux, a system that restricts raw system calls (OpenBSD) still works.
func rawWriteFD(fd uintptr, p []byte) (int, error) {
	return syscall.Write(int(fd), p)
}

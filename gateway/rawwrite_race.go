//go:build race

package gateway

import "syscall"

// rawWriteFD is rawwrite.go's, through syscall.Write: its race
// annotations make what a socket's peer reads (a test's client) happen
// after what was written, as the detector sees it.
func rawWriteFD(fd uintptr, p []byte) (int, error) {
	return syscall.Write(int(fd), p)
}

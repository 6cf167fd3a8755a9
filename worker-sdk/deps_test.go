package trine_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the SDK light: it may import the protocol, grpc and
// the standard library, never the engine, its modules or NATS.
func TestDependencies(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/trinehq/trine/engine", "github.com/trinehq/trine/streammodule", "github.com/trinehq/trine/cmd", "github.com/nats-io/"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("worker-sdk depends on %s", dep)
			}
		}
	}
}

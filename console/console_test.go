package console

import (
	"bytes"
	"os"
	"testing"

	"github.com/trinehq/trine/console/internal/bundle"
)

// TestBundleIsCurrent: dist/console.js is what go generate makes from
// web/src and clients/js/src today (make check diffs it too).
func TestBundleIsCurrent(t *testing.T) {
	want, err := bundle.Build(".")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("dist/console.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("dist/console.js (%d bytes) is not the bundle of web/src (%d bytes): run go generate ./console", len(got), len(want))
	}
}

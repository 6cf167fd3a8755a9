// Command gen writes the console's script, dist/console.js, from web/src
// (package bundle). Run from the console directory: go generate ./console.
//
// Concurrency: it runs once and starts no goroutines of its own.
package main

import (
	"fmt"
	"os"

	"github.com/trinehq/trine/console/internal/bundle"
)

func main() {
	js, err := bundle.Build(".")
	if err == nil {
		err = os.WriteFile("dist/console.js", js, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "console/gen:", err)
		os.Exit(1)
	}
}

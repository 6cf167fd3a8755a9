package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/trinehq/trine/streammodule/store"
)

const storeUsage = `Usage: trine store verify|repair [--data-dir DIR]

Checks or repairs the file stores (--store file) in DIR/streams and
DIR/state (default ./trine-data, or TRINE_DATA_DIR). Stop the engine first.

  verify   read the snapshot and journal, change nothing; exit 0 when every
           record reads (a torn tail, a write cut short by a crash and
           never acknowledged, is reported but fine), 1 when some are
           damaged: the engine then refuses to start
  repair   move each damaged file aside to <name>.corrupt-<time> (never
           deleted) and replace it with every record that reads; the
           records in the damaged spans are lost and listed
`

// runStore is `trine store`.
func runStore(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "repair") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, storeUsage)
			return 0
		}
		fmt.Fprint(stderr, storeUsage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("trine store "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def := "./trine-data"
	if v, ok := lookupEnv("TRINE_DATA_DIR"); ok && v != "" {
		def = v
	}
	dataDir := fs.String("data-dir", def, "")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		if err == flag.ErrHelp {
			fmt.Fprint(stdout, storeUsage)
			return 0
		}
		fmt.Fprintf(stderr, "trine store %s: bad arguments (see trine store --help)\n", cmd)
		return 2
	}
	code := 0
	for i, name := range []string{"streams", "state"} {
		dir := filepath.Join(*dataDir, name)
		if _, err := os.Stat(dir); err != nil {
			if i > 0 && os.IsNotExist(err) {
				continue // an engine before the state module
			}
			fmt.Fprintf(stderr, "trine store %s: %v\n", cmd, err)
			return 1
		}
		code = max(code, storeCheck(cmd, dir, stdout, stderr))
	}
	return code
}

// storeCheck verifies or repairs the file store in dir.
func storeCheck(cmd, dir string, stdout, stderr io.Writer) int {
	var rep store.Report
	var err error
	if cmd == "verify" {
		rep, err = store.Verify(dir)
	} else {
		rep, err = store.Repair(dir)
	}
	if err != nil {
		fmt.Fprintf(stderr, "trine store %s: %v\n", cmd, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d readable records\n", dir, rep.Records)
	if t := rep.TornTail; t != nil {
		fmt.Fprintf(stdout, "torn tail: %d bytes at offset %d of the journal (a write cut short by a crash; it is dropped at start)\n", t.Length, t.Offset)
	}
	for _, d := range rep.Damaged {
		fmt.Fprintf(stdout, "damaged: %s, %d bytes at offset %d\n", d.Path, d.Length, d.Offset)
	}
	switch {
	case rep.MovedAside != "":
		fmt.Fprintf(stdout, "repaired: the damaged file is kept as %s; the records in the damaged spans are lost, every other one is kept\n", rep.MovedAside)
	case len(rep.Damaged) > 0:
		fmt.Fprintln(stdout, "the engine will refuse to start; `trine store repair` keeps every readable record and moves the damaged file aside")
		return 1
	default:
		fmt.Fprintln(stdout, "ok")
	}
	return 0
}

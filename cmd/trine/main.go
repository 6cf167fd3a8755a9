package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	// Cron triggers name IANA time zones; the binary carries the zone
	// database so that they work on hosts without one (containers).
	_ "time/tzdata"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, restore the default handling so that a second
	// one ends the process at once instead of waiting for the drain.
	context.AfterFunc(ctx, stop)
	processWide = true
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without process globals, so that tests can drive it. It
// returns the exit code: 0 on success, 1 on failure, 2 on a usage error.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "engine":
		return runEngine(ctx, rest, os.LookupEnv, stdout, stderr)
	case "gateway":
		return runGateway(ctx, rest, os.LookupEnv, stdout, stderr)
	case "trigger":
		return runTrigger(ctx, rest, os.LookupEnv, stdin, stdout, stderr)
	case "triggers":
		return runTriggers(ctx, rest, os.LookupEnv, stdin, stdout, stderr)
	case "codegen":
		return runCodegen(ctx, rest, os.LookupEnv, stdout, stderr)
	case "store":
		return runStore(rest, os.LookupEnv, stdout, stderr)
	case "token":
		return runToken(rest, stdout, stderr)
	case "version", "--version", "-version":
		if len(rest) > 0 {
			fmt.Fprintln(stderr, "trine version: takes no arguments")
			return 2
		}
		fmt.Fprintln(stdout, "trine", version)
		return 0
	case "help", "-h", "-help", "--help":
		if len(rest) == 1 && rest[0] != "help" {
			return run(ctx, []string{rest[0], "--help"}, stdin, stdout, stderr)
		}
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "trine: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: trine COMMAND [flags] [args]

Commands:
  engine    run the engine (trine engine --help lists every setting)
  gateway   run a stream gateway in its own process (trine gateway --help)
  trigger   call a function: trine trigger [flags] FUNCTION_ID [JSON|-]
  triggers  list triggers, or release an orphaned one: trine triggers list|release
  codegen   TypeScript types of the streams' contracts: trine codegen ts [--engine ADDR] [--streams A,B] [-o FILE]
  store     check or repair the file store: trine store verify|repair [--data-dir DIR]
  token     sign a development JWT for browsers: trine token --secret-file FILE [flags]
  version   print the version (also: trine --version)
  help      print this help, or a command's: trine help COMMAND
`)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/trinehq/trine/engine"
)

const triggersUsage = `Usage: trine triggers list [flags] [PREFIX]
       trine triggers release [flags] TRIGGER_ID

  list      print the engine's trigger types and triggers with their
            status (engine::triggers::overview), those whose id starts
            with PREFIX. A trigger with status "orphaned" outlived its
            worker and is still in force; its reason says what it does
  release   end an orphaned trigger (engine::triggers::release): a
            stream:join trigger whose worker left denies every join it
            covers until then, or until a trigger with its id registers
            again. A live trigger is not released (trigger_not_found)

Flags are trine trigger's, and go before the arguments:
  --engine ADDR       engine gRPC address (env TRINE_ENGINE, default 127.0.0.1:49134)
  --tls-ca FILE, --tls-cert FILE, --tls-key FILE, --token TOKEN, --timeout DURATION
                      see trine trigger --help
The answer and the exit codes are trine trigger's.
`

// runTriggers is `trine triggers`: trine trigger calls of the engine's trigger
// functions.
func runTriggers(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "trine triggers: "+format+" (see trine triggers --help)\n", a...)
		return 2
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, triggersUsage)
		return 2
	}
	sub := args[0]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, triggersUsage)
		return 0
	case "list", "release":
	default:
		return fail("unknown subcommand %q: want list or release", sub)
	}
	// The connection flags are trine trigger's: read them here so that
	// the arguments are counted, then hand them on.
	fs := flag.NewFlagSet("trine triggers "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, name := range []string{"engine", "tls-ca", "tls-cert", "tls-key", "token", "timeout"} {
		fs.String(name, "", "")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, triggersUsage)
			return 0
		}
		return fail("%v", err)
	}
	var call []string
	fs.Visit(func(f *flag.Flag) { call = append(call, "--"+f.Name+"="+f.Value.String()) })
	var in map[string]string
	switch {
	case sub == "list" && fs.NArg() <= 1:
		call = append(call, engine.FnTriggersOverview)
		in = map[string]string{"prefix": fs.Arg(0)}
	case sub == "release" && fs.NArg() == 1:
		call = append(call, engine.FnTriggersRelease)
		in = map[string]string{"trigger_id": fs.Arg(0)}
	case sub == "release" && fs.NArg() == 0:
		return fail("missing TRIGGER_ID")
	default:
		return fail("too many arguments")
	}
	payload, err := json.Marshal(in)
	if err != nil {
		return fail("%v", err)
	}
	return runTrigger(ctx, append(call, string(payload)), lookupEnv, stdin, stdout, stderr)
}

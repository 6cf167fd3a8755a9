package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/tlsconf"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

const defaultEngineAddr = "127.0.0.1:49134"

// rpcMargin is how much longer than --timeout the client waits, so that the
// engine's own deadline_exceeded (with its message) arrives first.
const rpcMargin = 2 * time.Second

func triggerUsage(w io.Writer) {
	fmt.Fprintf(w, `Usage: trine trigger [flags] FUNCTION_ID [JSON|-]

Calls FUNCTION_ID through the engine's Trigger RPC with JSON as its payload
(default null; - reads it from stdin) and prints the result JSON on stdout.
A failed call prints {"code":"...","message":"..."} on stderr and exits 1;
a usage error or invalid JSON exits 2. Flags may come before or after
FUNCTION_ID and JSON.

Flags:
  --engine ADDR
      engine gRPC address (env TRINE_ENGINE, default %s);
      grpcs://HOST:PORT connects over TLS
  --tls-ca FILE
      PEM CA certificates that verify the engine (implies TLS; default
      with grpcs://: the system's roots)
  --tls-cert FILE, --tls-key FILE
      client certificate and key, for an engine that requires mTLS
  --token TOKEN
      sent as "authorization: Bearer TOKEN" (env TRINE_TOKEN), for a
      listener whose policy authenticates callers
  --timeout DURATION
      deadline of the call; 0 means the engine's default (default 30s)
  --void
      fire and forget: return once the engine accepted the call, print nothing
`, defaultEngineAddr)
}

// runTrigger is `trine trigger`.
func runTrigger(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdin io.Reader, stdout, stderr io.Writer) int {
	addr := defaultEngineAddr
	if v, ok := lookupEnv("TRINE_ENGINE"); ok && v != "" {
		addr = v
	}
	fs := flag.NewFlagSet("trine trigger", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&addr, "engine", addr, "")
	timeout := fs.Duration("timeout", 30*time.Second, "")
	void := fs.Bool("void", false, "")
	tlsCA := fs.String("tls-ca", "", "")
	tlsCert := fs.String("tls-cert", "", "")
	tlsKey := fs.String("tls-key", "", "")
	token, _ := lookupEnv("TRINE_TOKEN")
	fs.StringVar(&token, "token", token, "")
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "trine trigger: "+format+" (see trine trigger --help)\n", args...)
		return 2
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			triggerUsage(stdout)
			return 0
		}
		return fail("%v", err)
	}
	if *timeout < 0 {
		return fail("--timeout must not be negative")
	}
	id, payload, err := triggerArgs(pos, stdin)
	if err != nil {
		return fail("%v", err)
	}
	if addr == "" {
		return fail("--engine must not be empty")
	}
	host, _ := tlsconf.SplitScheme(addr)
	cc, tc, err := dialEngine(addr, *tlsCA, *tlsCert, *tlsKey, token)
	if err != nil {
		return fail("%v", err)
	}
	defer cc.Close()

	var timeoutMS int64
	if *timeout > 0 {
		timeoutMS = max(1, timeout.Milliseconds())
	}
	res, err := trigger(ctx, trinev1.NewEngineServiceClient(cc), &trinev1.TriggerRequest{
		FunctionId: id,
		Payload:    payload,
		TimeoutMs:  timeoutMS,
		Action:     action(*void),
	}, *timeout)
	if err != nil {
		f := callError(err, addr)
		if f.Code == "unavailable" {
			f.Message = diagnoseTLS(ctx, addr, host, tc, f.Message)
		}
		writeCallError(stderr, f)
		return 1
	}
	if !*void {
		out := res.GetResult()
		if len(out) == 0 {
			out = []byte("null")
		}
		fmt.Fprintf(stdout, "%s\n", out)
	}
	return 0
}

// triggerArgs reads FUNCTION_ID [JSON] (JSON "-": from stdin); the
// payload is null without JSON.
func triggerArgs(pos []string, stdin io.Reader) (id string, payload []byte, err error) {
	payload = []byte("null")
	switch len(pos) {
	case 0:
		return "", nil, errors.New("missing FUNCTION_ID")
	case 1:
		return pos[0], payload, nil
	case 2:
	default:
		return "", nil, errors.New("too many arguments: want FUNCTION_ID [JSON]; quote the JSON as one argument")
	}
	payload = []byte(pos[1])
	if pos[1] == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return "", nil, fmt.Errorf("read JSON from stdin: %v", err)
		}
		payload = b
	}
	payload = bytes.TrimSpace(payload)
	if err := json.Unmarshal(payload, new(json.RawMessage)); err != nil {
		return "", nil, fmt.Errorf("the payload is not valid JSON: %v", err)
	}
	return pos[0], payload, nil
}

// dialEngine is a client of the engine at addr (grpcs:// for TLS), with
// the TLS files and bearer token given; tc is its TLS configuration, nil
// without TLS.
func dialEngine(addr, ca, cert, key, token string) (cc *grpc.ClientConn, tc *tls.Config, err error) {
	host, useTLS := tlsconf.SplitScheme(addr)
	creds := insecure.NewCredentials()
	if useTLS || ca != "" || cert != "" {
		if tc, err = tlsconf.Client(ca, cert, key); err != nil {
			return nil, nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearerToken(token)))
	}
	cc, err = grpc.NewClient(host, append(dial,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)),
	)...)
	if err != nil {
		return nil, nil, fmt.Errorf("engine address %q: %v", addr, err)
	}
	return cc, tc, nil
}

// diagnoseTLS says why an engine that answered unavailable may have
// refused the connection (TLS on one side only, a client certificate
// missing); otherwise it returns msg.
func diagnoseTLS(ctx context.Context, addr, host string, tc *tls.Config, msg string) string {
	switch tlsconf.Diagnose(ctx, host, tc, nil) {
	case tlsconf.ServerSpeaksTLS:
		return fmt.Sprintf("the engine at %s speaks TLS: use --engine grpcs://%s (with --tls-ca FILE for a private CA)", addr, host)
	case tlsconf.ClientCertRequired:
		return fmt.Sprintf("the engine at %s requires a client certificate (mTLS): pass --tls-cert FILE and --tls-key FILE", addr)
	}
	return msg
}

// parseInterleaved parses the flags of args wherever they stand, before or
// after FUNCTION_ID and JSON, and returns the other arguments. An argument
// that names no flag of fs ("-", a negative number) is not a flag; none
// after "--" is.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if parsed := args[:len(args)-len(rest)]; len(parsed) > 0 && parsed[len(parsed)-1] == "--" {
			return append(pos, rest...), nil
		}
		for len(rest) > 0 && !namesFlag(fs, rest[0]) {
			pos, rest = append(pos, rest[0]), rest[1:]
		}
		if len(rest) == 0 {
			return pos, nil
		}
		args = rest
	}
}

// namesFlag reports whether arg is -name, --name or --name=value for a
// flag of fs.
func namesFlag(fs *flag.FlagSet, arg string) bool {
	if arg == "--" {
		return true
	}
	name, ok := strings.CutPrefix(arg, "-")
	if !ok {
		return false
	}
	name = strings.TrimPrefix(name, "-")
	name, _, _ = strings.Cut(name, "=")
	return fs.Lookup(name) != nil || name == "h" || name == "help"
}

func action(void bool) trinev1.Action {
	if void {
		return trinev1.Action_ACTION_VOID
	}
	return trinev1.Action_ACTION_UNSPECIFIED
}

func trigger(ctx context.Context, c trinev1.EngineServiceClient, req *trinev1.TriggerRequest, timeout time.Duration) (*trinev1.TriggerResponse, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout+rpcMargin)
		defer cancel()
	}
	return c.Trigger(ctx, req)
}

// failure is what `trine trigger` prints on stderr when the call fails.
type failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// callError turns an RPC error into a Trine code and message: the engine's
// own code when the status carries one, else one derived from the gRPC code.
func callError(err error, addr string) failure {
	st, ok := status.FromError(err)
	if !ok {
		return failure{Code: "internal", Message: err.Error()}
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == grpcserver.ErrorDomain && info.GetReason() != "" {
			return failure{Code: info.GetReason(), Message: st.Message()}
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		return failure{Code: "unavailable", Message: fmt.Sprintf("the engine at %s is not reachable: %s", addr, st.Message())}
	case codes.ResourceExhausted:
		return failure{Code: "message_too_large", Message: st.Message()}
	case codes.DeadlineExceeded:
		return failure{Code: "deadline_exceeded", Message: st.Message()}
	case codes.Canceled:
		return failure{Code: "cancelled", Message: st.Message()}
	default:
		return failure{Code: "internal", Message: fmt.Sprintf("%s: %s", st.Code(), st.Message())}
	}
}

func writeCallError(w io.Writer, f failure) {
	enc := json.NewEncoder(w) // Encode ends the line
	enc.SetEscapeHTML(false)
	_ = enc.Encode(f)
}

// bearerToken sends --token as "authorization: Bearer …" with the call.
type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

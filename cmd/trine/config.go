package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rs/cors"
	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/console"
	"github.com/trinehq/trine/cronmodule"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/httptrigger"
	"github.com/trinehq/trine/internal/httpinvoke"
	"github.com/trinehq/trine/internal/jwtauth"
	"github.com/trinehq/trine/internal/tlsconf"
	"github.com/trinehq/trine/pubsubmodule"
	"github.com/trinehq/trine/queuemodule"
	"github.com/trinehq/trine/statemodule"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
)

// engineConfig is the configuration of `trine engine` (and, in part, of
// `trine gateway`), resolved from flags, TRINE_* environment variables, an
// optional YAML file and defaults, in that order of precedence. Each
// module's settings land in that module's own Config (engineSettings maps
// every key onto its field); what several parts share sits at the top, and
// is handed to each part as it is built, with the bounds that depend on
// another setting lowered there.
type engineConfig struct {
	ConfigFile string
	GRPCAddr   string
	HTTPAddr   string
	StreamAddr string
	DataDir    string
	LogLevel   slog.Level
	LogFormat  string
	// MemoryReleaseIdle is how often the process looks whether it went
	// quiet, to hand free heap pages back (releaseIdleMemory); -1: never.
	MemoryReleaseIdle time.Duration
	// CPUs is what the process sizes GOMAXPROCS and its socket writers
	// for; 0: its share of the host (sizeCPUs).
	CPUs int
	// MaxMessageBytes is the largest gRPC or iii message; list answers,
	// stream items and state values are lowered to fit one.
	MaxMessageBytes int
	// AllowedOrigins and AllowedHosts guard every browser-facing listener:
	// the stream gateway, the iii listener, channels and the console.
	AllowedOrigins, AllowedHosts []string
	// MaxListBytesTotal bounds the stream::* and state::* list answers
	// being built at once (store.Lists).
	MaxListBytesTotal int

	Engine        engine.Config       // the core; MaxListBytes is lowered to MaxMessageBytes
	III           iiiConfig           // the main iii listener
	Listeners     []listenerConfig    // extra worker listeners (YAML listeners:)
	HTTP          httptrigger.Config  // http triggers
	HTTPStreaming bool                // http triggers get request_body and response channels
	HTTPCORS      corsConfig          // the HTTP listener's CORS
	HTTPInvoke    httpinvoke.Config   // HTTP-invoked functions
	Channels      channels.Config     // data channels
	Stream        streammodule.Config // stream::*
	State         statemodule.Config  // state::*
	Queue         queuemodule.Config  // queues (YAML queues: gives Queues)
	Cron          cronmodule.Config
	PubSub        pubsubmodule.Config
	Gateway       gateway.Config            // browsers
	Presence      natsfanout.PresenceConfig // the presence bucket
	StreamJWT     jwtauth.Config            // browsers admitted by JSON Web Tokens
	Store         storeConfig
	NATS          natsConfig
	Console       consoleConfig
	TLS           tlsconf.Files
	Contracts     contractsConfig // --contract-* and YAML streams:

	OTel otelConfig // tracing

	EngineAddr string        // trine gateway only
	EngineTLS  tlsconf.Files // trine gateway: its client TLS to the engine (ClientCA: the engine's CA)
}

// iiiConfig is the main iii listener: where it listens, how long a
// worker's registrations wait for its namespace, and its access policy
// (none when Access is zero).
type iiiConfig struct {
	Addr           string // off: none
	NamespaceGrace time.Duration
	Access         engine.Access
}

// storeConfig is where stream items and state live.
type storeConfig struct {
	Kind     string // file, memory or jetstream
	Replicas int    // of the JetStream streams and claims
	// A group commit of --store jetstream: the writes and bytes of one
	// group committed together.
	BatchWrites, BatchBytes int
	// How long a hot group's commit waits for its last batch's writers.
	BatchWait time.Duration
}

// natsConfig is the engine's NATS: an embedded server, or the servers of
// URL with the client credentials and TLS to reach them.
type natsConfig struct {
	URL            string
	ConnectTimeout time.Duration
	Addr           string // the embedded server's listener; off: none
	Token          string
	TokenGenerated bool          // --nats-token generate: print it at start
	Creds, NKey    string        // files
	TLS            tlsconf.Files // ClientCA: the CA that verifies the NATS servers
}

// consoleConfig is the live console.
type consoleConfig struct {
	Mode       string // auto or off
	Addr       string // "": the console is on --http-addr
	TokensFile string
}

// setting is one configuration key, known under three names. set reads a
// value into the field of the configuration the setting was made for.
type setting struct {
	flag  string // flag name, without dashes; also gives the env and YAML names
	arg   string // placeholder for the value in --help
	def   string
	usage string
	set   func(v string) error
}

func (s setting) env() string  { return envName(s.flag) }
func (s setting) yaml() string { return strings.ReplaceAll(s.flag, "-", "_") }

func envName(flagName string) string {
	return "TRINE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// configFlag names the YAML file. It is not itself a YAML key.
const configFlag = "config"

func checkAddr(v string) error {
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		return errors.New("must be HOST:PORT (port 0 picks a free port)")
	}
	return nil
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(v string) []string {
	var out []string
	for o := range strings.SplitSeq(v, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

func positiveInt(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, errors.New("must be a positive integer")
	}
	return n, nil
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New("must be a positive duration such as 500ms, 30s or 2m")
	}
	return d, nil
}

// usageError is a mistake in how the command was invoked (exit code 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// parseEngineConfig resolves the configuration of `trine engine` from args,
// the environment seen through lookupEnv, and the YAML file they name. It
// returns flag.ErrHelp when help was asked for; any other error is a
// *usageError.
func parseEngineConfig(args []string, lookupEnv func(string) (string, bool)) (engineConfig, error) {
	return parseConfig(engineCommand, args, lookupEnv)
}

// command is a subcommand configured through settings.
type command struct {
	name     string                        // "trine engine"
	settings func(*engineConfig) []setting // its keys, each set into the config given
	intro    string                        // --help text before the flags
}

var engineCommand = command{name: "trine engine", settings: engineSettings, intro: `Runs the engine: the gRPC listener for workers and the Trigger RPC, the
HTTP listener for health checks and metrics, the StreamModule with its
store, an embedded NATS server, and the stream gateway for browsers.
SIGINT or SIGTERM drains it and exits 0.`}

// parseConfig resolves cmd's settings from args, the environment and the
// YAML file they name.
func parseConfig(cmd command, args []string, lookupEnv func(string) (string, bool)) (engineConfig, error) {
	var c engineConfig
	settings := cmd.settings(&c)
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, help by engineUsage
	fs.Usage = func() {}
	fs.String(configFlag, "", "")
	for _, s := range settings {
		fs.String(s.flag, s.def, s.usage)
	}
	if err := fs.Parse(bareOnOff(settings, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return engineConfig{}, err
		}
		return engineConfig{}, usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return engineConfig{}, usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	flags := make(map[string]string)
	fs.Visit(func(f *flag.Flag) { flags[f.Name] = f.Value.String() })
	env := func(name string) (string, bool) {
		v, ok := lookupEnv(name)
		return v, ok && v != "" // an empty variable counts as unset
	}

	for _, s := range settings {
		if err := s.set(s.def); err != nil {
			panic("trine: bad default for " + s.flag) // a bug in engineSettings
		}
	}
	if v, ok := flags[configFlag]; ok {
		c.ConfigFile = v
	} else if v, ok := env(envName(configFlag)); ok {
		c.ConfigFile = v
	}
	if c.ConfigFile != "" {
		if err := loadConfigFile(&c, settings, c.ConfigFile, env); err != nil {
			return engineConfig{}, err
		}
	}
	for _, s := range settings {
		if v, ok := env(s.env()); ok {
			if err := s.set(v); err != nil {
				return engineConfig{}, usageErrorf("invalid %s %q: %v", s.env(), v, err)
			}
		}
		if v, ok := flags[s.flag]; ok {
			if err := s.set(v); err != nil {
				return engineConfig{}, usageErrorf("invalid --%s %q: %v", s.flag, v, err)
			}
		}
	}
	resolveOTel(&c.OTel, env)
	if err := c.TLS.Check(); err != nil {
		return engineConfig{}, usageErrorf("%v", err)
	}
	if c.HTTPCORS.Credentials && slices.Contains(c.HTTPCORS.Origins, "*") {
		return engineConfig{}, usageErrorf("--http-cors-credentials on cannot go with --http-cors-origins '*': name the origins")
	}
	return c, nil
}

// bareOnOff rewrites each on|off flag of args given without a value
// (--http-invoke-allow-http, followed by another flag or nothing) as
// --flag=on, as Go's flag package reads a bare boolean flag; --flag on,
// --flag off and --flag=VALUE are kept.
func bareOnOff(settings []setting, args []string) []string {
	kinds := map[string]string{configFlag: "FILE"}
	for _, s := range settings {
		kinds[s.flag] = s.arg
	}
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			return append(out, args[i:]...) // flags end here
		}
		out = append(out, a)
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		kind, known := kinds[name]
		switch {
		case !known: // --name=VALUE, or a mistake the flag package reports
		case kind == "on|off" && (i+1 == len(args) || strings.HasPrefix(args[i+1], "-")):
			out[len(out)-1] = a + "=on"
		case i+1 < len(args):
			i++ // the flag's value, whatever it looks like
			out = append(out, args[i])
		}
	}
	return out
}

// loadConfigFile applies the YAML file at path to c. Variables in the file
// are expanded (see expandVars) before it is parsed.
func loadConfigFile(c *engineConfig, settings []setting, path string, env func(string) (string, bool)) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return usageErrorf("read config: %v", err)
	}
	text, err := expandVars(string(raw), env)
	if err != nil {
		return usageErrorf("config %s: %v", path, err)
	}
	var doc map[string]yaml.Node
	if err := yaml.NewDecoder(strings.NewReader(text)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return usageErrorf("config %s: %s", path, oneLine(err.Error()))
	}
	byKey := make(map[string]setting, len(settings))
	for _, s := range settings {
		byKey[s.yaml()] = s
	}
	// Apply in file order so that the first mistake is the one reported.
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return doc[a].Line - doc[b].Line })
	for _, k := range keys {
		n := doc[k]
		if _, ok := byKey["iii_addr"]; ok && k == "listeners" { // trine engine only
			ls, err := decodeListeners(&n)
			if err != nil {
				return usageErrorf("config %s: line %d: listeners: %v", path, n.Line, err)
			}
			c.Listeners = ls
			continue
		}
		if _, ok := byKey["iii_addr"]; ok && k == "streams" { // trine engine only
			ds, err := decodeStreamContracts(&n, filepath.Dir(path))
			if err != nil {
				return usageErrorf("config %s: line %d: streams: %v", path, n.Line, err)
			}
			c.Contracts.Streams = ds
			continue
		}
		if _, ok := byKey["iii_addr"]; ok && k == "queues" { // trine engine only
			qs, err := decodeQueues(&n)
			if err != nil {
				return usageErrorf("config %s: line %d: queues: %v", path, n.Line, err)
			}
			c.Queue.Queues = qs
			continue
		}
		s, ok := byKey[k]
		if !ok {
			return usageErrorf("config %s: line %d: unknown key %q (known keys: %s)", path, n.Line, k, knownKeys(settings))
		}
		if n.Kind != yaml.ScalarNode {
			return usageErrorf("config %s: line %d: %s must be a single value", path, n.Line, k)
		}
		v := n.Value
		if n.Tag == "!!null" {
			v = ""
		}
		if err := s.set(v); err != nil {
			return usageErrorf("config %s: line %d: invalid %s %q: %v", path, n.Line, k, v, err)
		}
	}
	return nil
}

// decodeStrict decodes a YAML key's node into a T strictly: an unknown
// field is an error, as for the rest of the file.
func decodeStrict[T any](n *yaml.Node) (T, error) {
	var v T
	raw, err := yaml.Marshal(n)
	if err != nil {
		return v, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&v); err != nil {
		return v, errors.New(oneLine(err.Error()))
	}
	return v, nil
}

func knownKeys(settings []setting) string {
	names := make([]string, 0, len(settings)+2)
	for _, s := range settings {
		names = append(names, s.yaml())
		if s.flag == "iii-addr" { // trine engine only
			names = append(names, "listeners", "queues", "streams")
		}
	}
	return strings.Join(names, ", ")
}

// oneLine joins a multi-line message (yaml.v3 lists several errors on
// separate lines) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// expandVars replaces ${VAR} with the value of VAR (empty if unset) and
// ${VAR:default} with the value of VAR, or default when VAR is unset or
// empty. A "$" not followed by "{" is kept as is.
func expandVars(s string, env func(string) (string, bool)) (string, error) {
	var b strings.Builder
	line := 1
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		line += strings.Count(s[:i], "\n")
		b.WriteString(s[:i])
		s = s[i+2:]
		end := strings.IndexAny(s, "}\n")
		if end < 0 || s[end] != '}' {
			return "", fmt.Errorf("line %d: unterminated ${", line)
		}
		name, def, hasDef := strings.Cut(s[:end], ":")
		if !validVarName(name) {
			return "", fmt.Errorf("line %d: invalid variable name %q in ${%s}", line, name, s[:end])
		}
		v, ok := env(name)
		if (!ok || v == "") && hasDef {
			v = def
		}
		b.WriteString(v)
		s = s[end+1:]
	}
}

func validVarName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// engineUsage writes the help of `trine engine`: every key with its flag,
// environment variable, YAML key and default.
func engineUsage(w io.Writer) { commandUsage(w, engineCommand) }

// commandUsage writes the help of cmd: every key with its flag, environment
// variable, YAML key and default.
func commandUsage(w io.Writer, cmd command) {
	settings := cmd.settings(new(engineConfig))
	var b bytes.Buffer
	fmt.Fprintf(&b, "Usage: %s [flags]\n\n%s\n\n", cmd.name, cmd.intro)
	b.WriteString(`Every setting comes from a flag, a TRINE_* environment variable, or the YAML
file named by --config; a flag beats the environment, which beats the file,
which beats the default. An empty environment variable counts as unset.

Flags:
`)
	fmt.Fprintf(&b, "  --%s FILE\n      YAML configuration file (env %s). Unknown keys are an error.\n", configFlag, envName(configFlag))
	b.WriteString("      ${VAR} and ${VAR:default} are expanded before parsing; the default\n")
	b.WriteString("      applies when VAR is unset or empty.\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "  --%s %s\n      %s\n      env %s, yaml %s, default %s\n", s.flag, s.arg, s.usage, s.env(), s.yaml(), s.def)
	}
	b.WriteString("\nExample YAML:\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "  %s: %s\n", s.yaml(), yamlExample(s))
	}
	_, _ = w.Write(b.Bytes())
}

func yamlExample(s setting) string {
	switch s.flag {
	case "grpc-addr":
		return `"${GRPC_ADDR:` + s.def + `}"`
	case "stream-auth-function", "allowed-origins", "allowed-hosts", "nats-url", "tls-cert", "tls-key", "tls-client-ca", "http-cors-origins",
		"iii-auth-function", "iii-expose-functions", "iii-middleware-function",
		"stream-jwt-hmac-secret-file", "stream-jwt-public-key-file", "stream-jwks-url", "stream-jwt-audience", "stream-jwt-issuer", "console-tokens-file",
		"nats-token", "nats-creds", "nats-nkey", "nats-tls-ca", "nats-tls-cert", "nats-tls-key",
		"engine-tls-ca", "engine-tls-cert", "engine-tls-key":
		return `""`
	case "http-addr", "data-dir", "stream-addr", "nats-addr", "engine", "iii-addr":
		return `"` + s.def + `"`
	}
	return s.def
}

// checkOptionalID checks v as an id when it is set.
func checkOptionalID(kind, v string) error {
	if v == "" {
		return nil
	}
	return engine.ValidateID(kind, v)
}

// corsConfig is the http listener's CORS.
type corsConfig struct {
	Origins, Methods, Headers []string
	Credentials               bool
	MaxAge                    time.Duration
}

// wrap adds CORS to h when origins are set (rs/cors answers preflights).
func (c corsConfig) wrap(h http.Handler) http.Handler {
	if len(c.Origins) == 0 {
		return h
	}
	wrapped := cors.New(cors.Options{AllowedOrigins: c.Origins, AllowedMethods: c.Methods, AllowedHeaders: c.Headers,
		AllowCredentials: c.Credentials, MaxAge: int(c.MaxAge / time.Second)}).Handler(h)
	// The console is never shared with other origins: its answers
	// carry the console user's cookie.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == console.Path || strings.HasPrefix(r.URL.Path, console.Path+"/") {
			h.ServeHTTP(w, r)
			return
		}
		wrapped.ServeHTTP(w, r)
	})
}

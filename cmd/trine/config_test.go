package main

import (
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/httptrigger"
	"github.com/trinehq/trine/internal/httpinvoke"
	"github.com/trinehq/trine/queuemodule"
	"github.com/trinehq/trine/statemodule"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/contracts"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/store/jsstore"
)

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trine.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var defaultConfig = engineConfig{
	GRPCAddr:          "127.0.0.1:49134",
	HTTPAddr:          "127.0.0.1:3111",
	StreamAddr:        "127.0.0.1:3112",
	DataDir:           "./trine-data",
	MaxMessageBytes:   4 << 20,
	LogLevel:          slog.LevelInfo,
	LogFormat:         "text",
	MemoryReleaseIdle: 500 * time.Millisecond,
	MaxListBytesTotal: 64 << 20,
	Engine: engine.Config{
		DefaultTimeout:        30 * time.Second,
		ShutdownGrace:         10 * time.Second,
		MaxTriggersPerWorker:  1000,
		MaxTriggers:           100000,
		TriggerFireRate:       200,
		MaxCallsPerWorker:     engine.DefaultMaxCallsPerWorker,
		MaxCallBytesPerWorker: engine.DefaultMaxCallBytesPerWorker,

		MaxFunctionsPerWorker:         1000,
		MaxFunctions:                  10000,
		MaxRegistrationBytesPerWorker: 16 << 20,
		MaxRegistrationBytes:          256 << 20,
		MaxListBytes:                  4 << 20,
	},
	III:           iiiConfig{Addr: "127.0.0.1:49135", NamespaceGrace: 5 * time.Second},
	HTTP:          httptrigger.Config{MaxBodyBytes: 1 << 20, MaxStreamBodyBytes: 1 << 30, Timeout: 30 * time.Second},
	HTTPStreaming: true,
	HTTPCORS:      corsConfig{Methods: []string{"GET", "POST", "PUT", "PATCH", "DELETE"}, Headers: []string{"Content-Type", "Authorization"}, MaxAge: 10 * time.Minute},
	HTTPInvoke:    httpinvoke.Config{AllowedHosts: []string{"*"}, MaxInFlight: 64},
	Channels:      channels.Config{MaxChannels: 10000, MaxConnChannels: 64, MaxConnBufferBytes: 64 << 20, MaxTotalBufferBytes: 512 << 20},
	Stream: streammodule.Config{HistorySize: 1000, HistoryGroupBytes: 16 << 20, HistoryTotalBytes: 256 << 20,
		PublishQueueBytes: 16 << 20, MaxItemBytes: 1 << 20},
	State: statemodule.Config{MaxValueBytes: 512 << 10},
	Queue: queuemodule.Config{AckWait: 30 * time.Second, MaxConcurrency: 64, InFlightBytes: 64 << 20, InFlightBytesTotal: 256 << 20},
	Gateway: gateway.Config{
		MaxFrameBytes:     1 << 20,
		QueueMessages:     4096,
		QueueBytes:        8 << 20,
		MaxCatchUps:       4,
		MaxCatchUpsTotal:  64,
		SnapshotPageBytes: 262144,
		SnapshotCoalesce:  50 * time.Millisecond,
		PingInterval:      25 * time.Second,
		SSEKeepAlive:      3 * time.Second,
		SessionPosts:      20,
		WriteTimeout:      10 * time.Second,

		KnownContracts: 10000, KnownContractBytes: 1 << 20, StreamLabels: 20, ClientLatencyEvery: 500 * time.Millisecond, ClientLatencyMax: time.Minute,

		PresenceGrace: 5 * time.Second, PresenceMaxMembers: 1000, PresenceMaxMetaBytes: 1024,
		PresenceMaxPerConn: 16, PresenceMaxTotal: 100000, PresenceMaxTotalBytes: 64 << 20, PresenceRateBytes: 4 << 20,
	},
	Presence: natsfanout.PresenceConfig{TTL: 15 * time.Second, Replicas: 1},
	Store:    storeConfig{Kind: "file", Replicas: 1, BatchWrites: jsstore.DefaultMaxBatchWrites, BatchBytes: jsstore.DefaultMaxBatchBytes, BatchWait: jsstore.DefaultBatchWait},
	NATS:     natsConfig{Addr: "127.0.0.1:4222", ConnectTimeout: 30 * time.Second},
	Console:  consoleConfig{Mode: "auto"},
	Contracts: contractsConfig{Limits: contract.Limits{MaxSchemaBytes: 256 << 10, MaxSchemaDepth: 64, MaxEvaluations: 256, MaxValueDepth: 64,
		MaxValidationWork: 2_000_000, MaxPatternWork: 10_000_000, MaxEventTypes: 256, MaxCachedSchemas: 1024, MaxCachedBytes: 64 << 20, MaxCachedContracts: 10000,
		DefineTimeout: 30 * time.Second, DefineMaxItems: 100_000, DefineMaxBytes: 256 << 20, MaxVersions: 1000, MaxHistoryBytes: 64 << 20},
		Refusals: contracts.RefusalLimits{PerName: 50, NameBytes: 64 << 10, Bytes: 4 << 20}},
	OTel: otelConfig{Ratio: -1, ForwardBytesPerSecond: 1 << 20},
}

func TestParseEngineConfig(t *testing.T) {
	t.Parallel()
	const fullFile = `
grpc_addr: 10.0.0.1:1
http_addr: "10.0.0.1:2"
data_dir: /var/lib/trine
default_timeout: 1m
shutdown_grace: 3s
max_message_bytes: 1024
log_level: warn
log_format: json
`
	tests := []struct {
		name string
		file string // YAML; passed with --config unless env names it
		env  map[string]string
		args []string
		want func(c *engineConfig)
	}{
		{name: "Defaults", want: func(*engineConfig) {}},
		{name: "EmptyFile", file: "# nothing\n", want: func(*engineConfig) {}},
		{name: "FileOnly", file: fullFile, want: func(c *engineConfig) {
			c.GRPCAddr, c.HTTPAddr, c.DataDir = "10.0.0.1:1", "10.0.0.1:2", "/var/lib/trine"
			c.Engine.DefaultTimeout, c.Engine.ShutdownGrace, c.MaxMessageBytes = time.Minute, 3*time.Second, 1024
			c.LogLevel, c.LogFormat = slog.LevelWarn, "json"
		}},
		{name: "EnvOnly", env: map[string]string{
			"TRINE_GRPC_ADDR": "[::1]:5", "TRINE_HTTP_ADDR": ":6", "TRINE_DATA_DIR": "d",
			"TRINE_DEFAULT_TIMEOUT": "2s", "TRINE_SHUTDOWN_GRACE": "4s", "TRINE_MAX_MESSAGE_BYTES": "99",
			"TRINE_LOG_LEVEL": "DEBUG", "TRINE_LOG_FORMAT": "json",
		}, want: func(c *engineConfig) {
			c.GRPCAddr, c.HTTPAddr, c.DataDir = "[::1]:5", ":6", "d"
			c.Engine.DefaultTimeout, c.Engine.ShutdownGrace, c.MaxMessageBytes = 2*time.Second, 4*time.Second, 99
			c.LogLevel, c.LogFormat = slog.LevelDebug, "json"
		}},
		{name: "FlagsOnly", args: []string{
			"--grpc-addr", "h:1", "--http-addr=h:2", "-data-dir", "x", "--default-timeout", "5s",
			"--shutdown-grace", "6s", "--max-message-bytes", "7", "--log-level", "error", "--log-format", "json",
		}, want: func(c *engineConfig) {
			c.GRPCAddr, c.HTTPAddr, c.DataDir = "h:1", "h:2", "x"
			c.Engine.DefaultTimeout, c.Engine.ShutdownGrace, c.MaxMessageBytes = 5*time.Second, 6*time.Second, 7
			c.LogLevel, c.LogFormat = slog.LevelError, "json"
		}},
		{name: "StreamFlags", args: []string{
			"--stream-addr", "h:3", "--nats-url", "nats://a:1,nats://b:2", "--nats-addr", "off", "--store", "jetstream",
			"--store-replicas", "3", "--stream-history", "50", "--stream-auth-function", "auth::check",
			"--allowed-origins", " https://a.example , https://b.example,", "--stream-max-frame-bytes", "2048",
			"--stream-queue-messages", "16", "--stream-queue-bytes", "4096", "--stream-ping-interval", "1s",
			"--stream-write-timeout", "2s", "--iii-addr", "off", "--iii-namespace-grace", "1s", "--http-max-body-bytes", "10",
			"--http-timeout", "3s", "--http-streaming", "off",
		}, want: func(c *engineConfig) {
			c.III.Addr, c.III.NamespaceGrace, c.HTTP.MaxBodyBytes, c.HTTP.Timeout, c.HTTPStreaming = "off", time.Second, 10, 3*time.Second, false
			c.StreamAddr, c.NATS.URL, c.NATS.Addr, c.Store.Kind, c.Store.Replicas = "h:3", "nats://a:1,nats://b:2", "off", "jetstream", 3
			c.Stream.HistorySize, c.Gateway.AuthFunction = 50, "auth::check"
			c.AllowedOrigins = []string{"https://a.example", "https://b.example"}
			c.Gateway.MaxFrameBytes, c.Gateway.QueueMessages, c.Gateway.QueueBytes = 2048, 16, 4096
			c.Gateway.PingInterval, c.Gateway.WriteTimeout = time.Second, 2*time.Second
		}},
		{name: "EnvBeatsFile", file: fullFile, env: map[string]string{"TRINE_GRPC_ADDR": "env:1", "TRINE_DEFAULT_TIMEOUT": "9s"}, want: func(c *engineConfig) {
			c.GRPCAddr, c.HTTPAddr, c.DataDir = "env:1", "10.0.0.1:2", "/var/lib/trine"
			c.Engine.DefaultTimeout, c.Engine.ShutdownGrace, c.MaxMessageBytes = 9*time.Second, 3*time.Second, 1024
			c.LogLevel, c.LogFormat = slog.LevelWarn, "json"
		}},
		{name: "FlagBeatsEnvAndFile", file: fullFile,
			env:  map[string]string{"TRINE_GRPC_ADDR": "env:1", "TRINE_HTTP_ADDR": "env:2"},
			args: []string{"--grpc-addr", "flag:1", "--log-format", "text"},
			want: func(c *engineConfig) {
				c.GRPCAddr, c.HTTPAddr, c.DataDir = "flag:1", "env:2", "/var/lib/trine"
				c.Engine.DefaultTimeout, c.Engine.ShutdownGrace, c.MaxMessageBytes = time.Minute, 3*time.Second, 1024
				c.LogLevel, c.LogFormat = slog.LevelWarn, "text"
			}},
		{name: "LastFlagWins", args: []string{"--data-dir", "a", "--data-dir", "b"}, want: func(c *engineConfig) { c.DataDir = "b" }},
		{name: "EmptyEnvIsUnset", file: "data_dir: fromfile\n", env: map[string]string{"TRINE_DATA_DIR": ""}, want: func(c *engineConfig) { c.DataDir = "fromfile" }},
		{name: "Expansion", file: "grpc_addr: ${HOST}:${PORT:49999}\nhttp_addr: ${HTTP:127.0.0.1:8080}\ndata_dir: ${HOME_DIR}/data\nlog_level: ${LEVEL:}debug\n",
			env: map[string]string{"HOST": "example", "HOME_DIR": "/home/x", "HTTP": ""},
			want: func(c *engineConfig) {
				c.GRPCAddr, c.HTTPAddr, c.DataDir, c.LogLevel = "example:49999", "127.0.0.1:8080", "/home/x/data", slog.LevelDebug
			}},
		{name: "ExpansionSetWinsOverDefault", file: "grpc_addr: ${ADDR:127.0.0.1:1}\n", env: map[string]string{"ADDR": "set:2"}, want: func(c *engineConfig) { c.GRPCAddr = "set:2" }},
		{name: "DollarWithoutBrace", file: "data_dir: /tmp/$dir/$\n", want: func(c *engineConfig) { c.DataDir = "/tmp/$dir/$" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeConfig(t, tt.file)}, args...)
			}
			got, err := parseEngineConfig(args, mapEnv(tt.env))
			if err != nil {
				t.Fatalf("parseEngineConfig(%q) error = %v", args, err)
			}
			want := defaultConfig
			tt.want(&want)
			got.ConfigFile = ""
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parseEngineConfig(%q) =\n %+v\nwant\n %+v", args, got, want)
			}
		})
	}
}

func TestParseEngineConfigFileName(t *testing.T) {
	t.Parallel()
	fromEnv := writeConfig(t, "data_dir: env-file\n")
	fromFlag := writeConfig(t, "data_dir: flag-file\n")
	env := mapEnv(map[string]string{"TRINE_CONFIG": fromEnv})
	if c, err := parseEngineConfig(nil, env); err != nil || c.DataDir != "env-file" || c.ConfigFile != fromEnv {
		t.Errorf("with TRINE_CONFIG: %+v, %v; want the file it names", c, err)
	}
	if c, err := parseEngineConfig([]string{"--config", fromFlag}, env); err != nil || c.DataDir != "flag-file" {
		t.Errorf("with --config and TRINE_CONFIG: %+v, %v; want --config's file", c, err)
	}
}

func TestParseEngineConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want string
	}{
		{name: "UnknownFlag", args: []string{"--nope"}, want: "flag provided but not defined: -nope"},
		{name: "MissingFlagValue", args: []string{"--grpc-addr"}, want: "flag needs an argument"},
		{name: "Positional", args: []string{"serve"}, want: `unexpected argument "serve"`},
		{name: "BadAddrFlag", args: []string{"--grpc-addr", "localhost"}, want: `invalid --grpc-addr "localhost": must be HOST:PORT`},
		{name: "EmptyAddrFlag", args: []string{"--http-addr", ""}, want: `invalid --http-addr ""`},
		{name: "EmptyDataDir", args: []string{"--data-dir="}, want: `invalid --data-dir "": must not be empty`},
		{name: "ZeroTimeout", args: []string{"--default-timeout", "0s"}, want: "must be a positive duration"},
		{name: "DurationWithoutUnit", args: []string{"--shutdown-grace", "10"}, want: "must be a positive duration"},
		{name: "ZeroMessageBytes", args: []string{"--max-message-bytes", "0"}, want: "must be an integer from 1"},
		{name: "HugeMessageBytes", args: []string{"--max-message-bytes", "99999999999"}, want: "must be an integer from 1"},
		{name: "BadLogLevel", args: []string{"--log-level", "trace"}, want: "must be debug, info, warn or error"},
		{name: "BadLogFormat", args: []string{"--log-format", "xml"}, want: "must be text or json"},
		{name: "BadStore", args: []string{"--store", "redis"}, want: "must be file, memory or jetstream"},
		{name: "BadNATSURL", args: []string{"--nats-url", "127.0.0.1:4222"}, want: `is not a URL such as nats://host:4222`},
		{name: "BadNATSAddr", args: []string{"--nats-addr", "4222"}, want: `invalid --nats-addr "4222": must be HOST:PORT`},
		{name: "ZeroReplicas", args: []string{"--store-replicas", "0"}, want: "must be a positive integer"},
		{name: "BadIIIAddr", args: []string{"--iii-addr", "49135"}, want: `invalid --iii-addr "49135": must be HOST:PORT`},
		{name: "ZeroBodyBytes", args: []string{"--http-max-body-bytes", "0"}, want: "must be a positive integer"},
		{name: "ZeroHTTPTimeout", args: []string{"--http-timeout", "0s"}, want: "must be a positive duration"},
		{name: "OriginWithSlash", args: []string{"--allowed-origins", "http://127.0.0.1:8765/"}, want: `invalid --allowed-origins "http://127.0.0.1:8765/": "http://127.0.0.1:8765/" never matches: an Origin is scheme://host[:port], with no path, query, user or default port; use "http://127.0.0.1:8765"`},
		{name: "OriginWithoutScheme", args: []string{"--allowed-origins", "https://ok.example,127.0.0.1:8765"}, want: `use "http://127.0.0.1:8765"`},
		{name: "NullOrigin", env: map[string]string{"TRINE_ALLOWED_ORIGINS": "null"}, want: "serve the page over http from localhost"},
		{name: "BadHTTPStreaming", args: []string{"--http-streaming", "yes"}, want: "must be on or off"},
		{name: "BadAuthFunction", args: []string{"--stream-auth-function", "bad\x01id"}, want: "unprintable character"},
		{name: "BadEnv", env: map[string]string{"TRINE_DEFAULT_TIMEOUT": "forever"}, want: `invalid TRINE_DEFAULT_TIMEOUT "forever"`},
		{name: "BadEnvEvenWhenFlagSet", env: map[string]string{"TRINE_LOG_FORMAT": "xml"}, args: []string{"--log-format", "json"}, want: `invalid TRINE_LOG_FORMAT "xml"`},
		{name: "MissingFile", args: []string{"--config", "/nonexistent/trine.yaml"}, want: "read config: open /nonexistent/trine.yaml"},
		{name: "UnknownKey", file: "grpc_addr: a:1\ngrpc_adress: b:2\n", want: `line 2: unknown key "grpc_adress" (known keys: grpc_addr, http_addr,`},
		{name: "NestedValue", file: "log_level:\n  value: debug\n", want: "line 2: log_level must be a single value"},
		{name: "ListValue", file: "data_dir: [a, b]\n", want: "line 1: data_dir must be a single value"},
		{name: "NullValue", file: "data_dir:\n", want: `line 1: invalid data_dir "": must not be empty`},
		{name: "BadFileValue", file: "\n\nmax_message_bytes: lots\n", want: `line 3: invalid max_message_bytes "lots"`},
		{name: "FirstMistakeReported", file: "log_format: xml\nlog_level: loud\n", want: "line 1: invalid log_format"},
		{name: "DuplicateKey", file: "data_dir: a\ndata_dir: b\n", want: "already defined"},
		{name: "NotAMapping", file: "- grpc_addr: a:1\n", want: "cannot unmarshal"},
		{name: "UnterminatedVar", file: "grpc_addr: ${ADDR\nhttp_addr: a:1\n", want: "line 1: unterminated ${"},
		{name: "BadVarName", file: "\ndata_dir: ${1DIR}\n", want: `line 2: invalid variable name "1DIR"`},
		{name: "EmptyVarName", file: "data_dir: ${:x}\n", want: `invalid variable name ""`},
		{name: "ExpandedToNothing", file: "grpc_addr: ${UNSET_ADDR}\n", want: `invalid grpc_addr ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeConfig(t, tt.file)}, args...)
			}
			_, err := parseEngineConfig(args, mapEnv(tt.env))
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parseEngineConfig(%q) error = %v, want a usage error containing %q", args, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans several lines", err)
			}
		})
	}
}

func TestParseEngineConfigHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help", "-help"} {
		if _, err := parseEngineConfig([]string{"--grpc-addr", "a:1", arg}, mapEnv(nil)); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("parseEngineConfig(%s) error = %v, want flag.ErrHelp", arg, err)
		}
	}
}

func TestExpandVars(t *testing.T) {
	t.Parallel()
	env := mapEnv(map[string]string{"A": "alpha", "EMPTY": "", "B_2": "b"})
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain: text", "plain: text"},
		{"${A}", "alpha"},
		{"x${A}y${B_2}z", "xalphaybz"},
		{"${UNSET}", ""},
		{"${UNSET:def}", "def"},
		{"${A:def}", "alpha"},
		{"${EMPTY:def}", "def"},
		{"${EMPTY}", ""},
		{"${UNSET:}", ""},
		{"${UNSET:a:b:c}", "a:b:c"},
		{"${UNSET:${}", "${"},
		{"$A $ {A} $$", "$A $ {A} $$"},
		{"# ${A}\nk: ${A}\n", "# alpha\nk: alpha\n"},
		{"${A}${A}", "alphaalpha"},
	}
	for _, tt := range tests {
		got, err := expandVars(tt.in, env)
		if err != nil || got != tt.want {
			t.Errorf("expandVars(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"${", "${A", "${A\n}", "${}", "${A-B}", "${ A}", "${A }", "x\n${é}"} {
		if got, err := expandVars(in, env); err == nil {
			t.Errorf("expandVars(%q) = %q, want an error", in, got)
		}
	}
}

// TestBareOnOffFlags: an on|off flag given alone means on, as a Go boolean
// flag does; with a value, or after another flag's value, it reads as
// before.
func TestBareOnOffFlags(t *testing.T) {
	t.Parallel()
	c, err := parseEngineConfig([]string{"--http-invoke-allow-http", "--http-streaming", "off", "-http-invoke-allow-private=on",
		"--stream-auth-function", "--http-cors-credentials", "--http-cors-credentials"}, mapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !c.HTTPInvoke.AllowHTTP || c.HTTPStreaming || !c.HTTPInvoke.AllowPrivate || c.Gateway.AuthFunction != "--http-cors-credentials" || !c.HTTPCORS.Credentials {
		t.Fatalf("allow-http %v, streaming %v, allow-private %v, auth function %q, cors credentials %v",
			c.HTTPInvoke.AllowHTTP, c.HTTPStreaming, c.HTTPInvoke.AllowPrivate, c.Gateway.AuthFunction, c.HTTPCORS.Credentials)
	}
	if _, err := parseEngineConfig([]string{"--http-streaming", "yes"}, mapEnv(nil)); err == nil || !strings.Contains(err.Error(), `invalid --http-streaming "yes": must be on or off`) {
		t.Fatalf("an on|off flag with another word: %v", err)
	}
}

// TestUnknownKeyListsEveryKey: the unknown-key message of trine engine's
// config file names listeners and queues too.
func TestUnknownKeyListsEveryKey(t *testing.T) {
	t.Parallel()
	_, err := parseEngineConfig([]string{"--config", writeConfig(t, "listener: []\n")}, mapEnv(nil))
	if err == nil || !strings.Contains(err.Error(), ", listeners, queues,") {
		t.Fatalf("unknown key: %v", err)
	}
}

// TestEverySettingHasAFieldOfItsOwn: each key of trine engine and trine
// gateway, set to a value other than its default, changes the
// configuration, and no two keys change the same field: a row bound to
// the wrong field shows here.
func TestEverySettingHasAFieldOfItsOwn(t *testing.T) {
	t.Parallel()
	other := map[string]string{"N": "7", "DURATION": "7s", "ADDR": "127.0.0.1:7", "ADDRS": "127.0.0.1:7", "FILE": "f", "DIR": "d",
		"ID": "a::b", "LIST": "x.example", "PATTERNS": "a::*", "URL": "https://x.example", "URLS": "nats://x:7", "TOKEN": "t",
		"KIND": "memory", "LEVEL": "debug", "FORMAT": "json", "MODE": "off", "AUD": "aud", "ISS": "iss", "PROTOCOL": "grpc", "RATIO": "0.5"}
	for _, cmd := range []command{engineCommand, gatewayCommand} {
		owner := map[string]string{} // field > key
		for _, s := range cmd.settings(new(engineConfig)) {
			var c engineConfig
			settings := cmd.settings(&c)
			for _, d := range settings {
				if err := d.set(d.def); err != nil {
					t.Fatalf("%s: default of --%s: %v", cmd.name, d.flag, err)
				}
			}
			before := c
			v, ok := other[s.arg]
			switch {
			case s.arg == "on|off" && s.def == "on":
				v = "off"
			case s.arg == "on|off":
				v = "on"
			case s.flag == "allowed-origins":
				v = "https://x.example"
			case !ok:
				t.Fatalf("%s: no other value for --%s %s", cmd.name, s.flag, s.arg)
			}
			if v == s.def {
				v = "8"
			}
			for _, d := range settings {
				if d.flag == s.flag {
					if err := d.set(v); err != nil {
						t.Fatalf("%s: --%s %s: %v", cmd.name, s.flag, v, err)
					}
				}
			}
			var changed []string
			diffFields(reflect.ValueOf(before), reflect.ValueOf(c), "", &changed)
			if len(changed) == 0 {
				t.Errorf("%s: --%s %s changes nothing", cmd.name, s.flag, v)
			}
			for _, f := range changed {
				if o, ok := owner[f]; ok && o != s.flag {
					t.Errorf("%s: --%s and --%s both set %s", cmd.name, o, s.flag, f)
				}
				owner[f] = s.flag
			}
		}
	}
}

// diffFields appends the paths of the exported leaf fields that differ
// between a and b.
func diffFields(a, b reflect.Value, path string, out *[]string) {
	if a.Kind() != reflect.Struct {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, path)
		}
		return
	}
	for i := range a.NumField() {
		if f := a.Type().Field(i); f.IsExported() {
			diffFields(a.Field(i), b.Field(i), path+"."+f.Name, out)
		}
	}
}

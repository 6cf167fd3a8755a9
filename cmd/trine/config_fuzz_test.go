package main

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfigFile: any YAML file (and ${VAR} expansion in it) gives a
// configuration or an error, never a panic; and a configuration it gives
// passes the same checks as flags.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		"grpc_addr: \"${GRPC_ADDR:127.0.0.1:0}\"\nstore: memory\n",
		"stream_queue_bytes: 10\nallowed_origins: \"https://a.example, https://b.example\"\n",
		"store: jetstream\nstore_replicas: 3\n",
		"default_timeout: -1s\n",
		"log_level: [1, 2]\n",
		"nope: 1\n",
		"${",
		"stream_history: ${UNSET:}\n",
		"- a\n- b\n",
		"a: &x [*x]\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "trine.yaml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := parseEngineConfig([]string{"--config", path}, func(string) (string, bool) { return "", false })
		if err != nil {
			return
		}
		if cfg.Gateway.QueueBytes <= 0 || cfg.Stream.HistorySize <= 0 || cfg.MaxMessageBytes <= 0 || cfg.Store.Replicas <= 0 {
			t.Fatalf("accepted a config with a non-positive limit: %+v", cfg)
		}
	})
}

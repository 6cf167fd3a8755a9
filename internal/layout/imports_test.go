package layout_test

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/trinehq/trine"

// pkg is what go list says of one package of the module.
type pkg struct {
	ImportPath string
	Dir        string
	Name       string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

// listPackages runs go list over the whole module, once per test.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

// TestSharedCodeLivesInLeaves keeps what several packages share in leaf
// packages: no package reaches into another's internals for it.
func TestSharedCodeLivesInLeaves(t *testing.T) {
	t.Parallel()
	banned := map[string][]string{
		// Subject tokens come from internal/subject, not the stream fan-out.
		"engine/natsroute":           {"streammodule/natsfanout"},
		"pubsubmodule":               {"streammodule/natsfanout"},
		"queuemodule":                {"streammodule/natsfanout"},
		"cronmodule":                 {"streammodule/natsfanout"},
		"streammodule/store/jsstore": {"streammodule/natsfanout"},
		// The gateway sees streams through streamapi only.
		"gateway": {"streammodule"},
		// Store errors, values and list bounds are the store's.
		"statemodule": {"streammodule"},
	}
	for _, p := range listPackages(t) {
		for _, b := range banned[rel(p.ImportPath)] {
			if slices.Contains(p.Imports, module+"/"+b) {
				t.Errorf("%s imports %s", rel(p.ImportPath), b)
			}
		}
	}
}

// TestEngineCoreIsPlain keeps the engine core free of file formats and of
// any module's function ids.
func TestEngineCoreIsPlain(t *testing.T) {
	t.Parallel()
	for _, p := range listPackages(t) {
		if rel(p.ImportPath) != "engine" {
			continue
		}
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "gopkg.in/yaml") {
				t.Errorf("engine depends on %s", d)
			}
		}
		for _, f := range p.GoFiles {
			b, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), `queue::`) {
				t.Errorf("engine/%s names a queue function", f)
			}
		}
	}
}

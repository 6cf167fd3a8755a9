package layout_test

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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

// TestGoDirectiveIsTheFloor: go.mod asks for the oldest Go the module
// needs, the newest that a dependency asks for, so that workers are not
// forced onto a newer toolchain than the code needs.
func TestGoDirectiveIsTheFloor(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Path}} {{.GoVersion}}", "all").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	var own, floor string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, v, _ := strings.Cut(l, " ")
		switch {
		case path == module:
			own = v
		case v != "" && semverLess(floor, v):
			floor = v
		}
	}
	if semverLess(own, floor) || semverLess(floor, own) {
		t.Errorf("go.mod says go %s; the newest a dependency needs is %s", own, floor)
	}
}

// semverLess compares Go versions such as 1.26 and 1.26.3.
func semverLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

package main

import (
	"os"
	"strings"
	"testing"
)

// TestDocsListEverySetting: docs/cli.md has a row for every setting of
// trine engine, with its environment variable, YAML key and default as
// the code has them, and no row for a setting that does not exist.
func TestDocsListEverySetting(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, l := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(l, "| `--") {
			continue
		}
		cells := strings.Split(l, "|")
		if len(cells) < 6 {
			continue
		}
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
		}
		rows[strings.TrimPrefix(cells[1], "--")] = cells[1:6]
	}
	known := map[string]bool{configFlag: true}
	for _, s := range engineSettings(new(engineConfig)) {
		known[s.flag] = true
		row, ok := rows[s.flag]
		if !ok {
			t.Errorf("docs/cli.md has no row for --%s", s.flag)
			continue
		}
		def := s.def
		if def == "" {
			def = "none"
		}
		if row[1] != s.env() || row[2] != s.yaml() || row[3] != def {
			t.Errorf("docs/cli.md row for --%s says %q, %q, default %q; the code: %q, %q, %q", s.flag, row[1], row[2], row[3], s.env(), s.yaml(), def)
		}
	}
	for flag := range rows {
		if !known[flag] {
			t.Errorf("docs/cli.md documents --%s, which trine engine does not have", flag)
		}
	}
}

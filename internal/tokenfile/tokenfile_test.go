package tokenfile_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trinehq/trine/internal/tokenfile"
)

func digest(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Tokens are matched by digest, with their AuthResult; bad files are
// refused naming the entry, and a failed reload keeps the table in use.
func TestTable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tokens.yaml")
	write(t, p, `tokens:
  - sha256: `+digest("alpha")+`
    name: ci
    allowed_functions: ["api::get"]
    function_registration_prefix: ci
    context: {team: build}
`)
	tab, err := tokenfile.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := tab.Lookup("alpha")
	if !ok || r.FunctionRegistrationPrefix != "ci" || len(r.AllowedFunctions) != 1 || !strings.Contains(string(r.Context), "build") {
		t.Fatalf("alpha: %v %+v", ok, r)
	}
	for _, tok := range []string{"", "beta", "ALPHA", digest("alpha")} {
		if _, ok := tab.Lookup(tok); ok {
			t.Errorf("%q was accepted", tok)
		}
	}
	for name, bad := range map[string]string{
		"short digest":  "tokens:\n  - sha256: abc\n",
		"no digest":     "tokens:\n  - name: x\n",
		"unknown field": "tokens:\n  - sha256: " + digest("x") + "\n    allowed: [a]\n",
		"duplicate":     "tokens:\n  - sha256: " + digest("x") + "\n  - sha256: " + digest("x") + "\n",
		"not yaml":      "tokens: [\n",
		"unknown key":   "users: []\n",
	} {
		write(t, p, bad)
		if err := tab.Reload(); err == nil {
			t.Errorf("%s: reloaded", name)
		}
	}
	if _, ok := tab.Lookup("alpha"); !ok {
		t.Fatal("a failed reload dropped the table in use")
	}
	write(t, p, "tokens:\n  - sha256: "+digest("beta")+"\n")
	if err := tab.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := tab.Lookup("alpha"); ok {
		t.Fatal("a removed token still works")
	}
	if _, ok := tab.Lookup("beta"); !ok {
		t.Fatal("an added token does not work")
	}
}

// TestPatternsAreRefused: allowed_functions and forbidden_functions hold
// exact ids, as in iii, so an entry with * could never match what its
// author meant: the file is refused, pointing to expose_functions.
func TestPatternsAreRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tokens.yaml")
	for _, field := range []string{"allowed_functions", "forbidden_functions"} {
		write(t, p, "tokens:\n  - sha256: "+digest("x")+"\n    "+field+": [\"api::get\", \"deploy::*\"]\n")
		_, err := tokenfile.Load(p)
		if err == nil {
			t.Fatalf("%s with a pattern was loaded", field)
		}
		for _, want := range []string{"entry 1", field, `"deploy::*"`, "exact", "expose_functions"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want it to say %q", field, err, want)
			}
		}
	}
}

// TestSecurityDocExample loads the tokens file docs/security.md shows and
// checks it means what the text says: the documented token grants exact
// ids.
func TestSecurityDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\ntokens:\n")
	if !ok {
		t.Fatal("docs/security.md shows no tokens file")
	}
	block, _, _ := strings.Cut(rest, "```")
	p := filepath.Join(t.TempDir(), "tokens.yaml")
	write(t, p, "tokens:\n"+block)
	tab, err := tokenfile.Load(p)
	if err != nil {
		t.Fatalf("the documented tokens file does not load: %v", err)
	}
	r, ok := tab.Lookup("admin") // the digest shown is sha256("admin")
	if !ok || len(r.AllowedFunctions) == 0 || r.FunctionRegistrationPrefix != "ci" {
		t.Fatalf("the documented token: %v %+v", ok, r)
	}
}

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
    allowed_functions: ["api::*"]
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

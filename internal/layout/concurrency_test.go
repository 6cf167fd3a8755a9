package layout_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// production reports whether a package of the module is production code:
// not a benchmark, an example, the compatibility suite or generated code.
func production(rel string) bool {
	for _, p := range []string{"bench", "examples", "compat", "proto"} {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return false
		}
	}
	return true
}

// TestConcurrencyStatements: every production package's doc comment has
// a paragraph starting "Concurrency:" that says what is safe to call
// concurrently, which goroutines the package starts and who stops them
// (coder/websocket's and centrifuge's doc.go are the models).
func TestConcurrencyStatements(t *testing.T) {
	t.Parallel()
	for _, p := range listPackages(t) {
		rel := rel(p.ImportPath)
		if !production(rel) {
			continue
		}
		var doc string
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil {
				doc += af.Doc.Text()
			}
		}
		if !strings.Contains("\n"+doc, "\nConcurrency: ") {
			t.Errorf("%s: the package doc has no \"Concurrency: \" paragraph", rel)
		}
	}
}

// TestLeakChecksWhereGoroutinesStart: a production package with tests
// whose code starts goroutines checks for leaked ones in its TestMain
// (goleak.VerifyTestMain).
func TestLeakChecksWhereGoroutinesStart(t *testing.T) {
	t.Parallel()
	for _, p := range listPackages(t) {
		rel := rel(p.ImportPath)
		if !production(rel) {
			continue
		}
		starts := false
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(af, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.GoStmt:
					starts = true
				case *ast.SelectorExpr:
					starts = starts || n.Sel.Name == "Go" // WaitGroup.Go, errgroup.Group.Go
				}
				return !starts
			})
		}
		tests, _ := filepath.Glob(filepath.Join(p.Dir, "*_test.go"))
		if !starts || len(tests) == 0 {
			continue
		}
		found := false
		for _, f := range tests {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			found = found || strings.Contains(string(b), "goleak.VerifyTestMain(")
		}
		if !found {
			t.Errorf("%s starts goroutines and its tests do not check for leaks (goleak.VerifyTestMain in TestMain)", rel)
		}
	}
}

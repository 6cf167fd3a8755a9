package codes_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/trinehq/trine/codes"
)

// TestAllListsEveryCode: All holds every constant the package declares.
func TestAllListsEveryCode(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []codes.Code
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, s := range g.Specs {
				v := s.(*ast.ValueSpec).Values[0].(*ast.BasicLit)
				c, _ := strconv.Unquote(v.Value)
				declared = append(declared, codes.Code(c))
			}
		}
	}
	if !slices.Equal(declared, codes.All()) {
		t.Fatalf("declared %v, All %v", declared, codes.All())
	}
}

// TestCodesDocumented: docs/reference.md has a row for every code.
func TestCodesDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/reference.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codes.All() {
		if !strings.Contains(string(b), "| `"+string(c)+"` |") {
			t.Errorf("docs/reference.md has no row for %s", c)
		}
	}
}

// TestOneList: no production file outside this package declares a
// constant whose value is a code, so that the list cannot be copied again:
// the engine and the SDK name these constants. Only the SDK, whose users
// name codes in its package (trine.CodeConflict), re-declares the names.
func TestOneList(t *testing.T) {
	known := map[string]bool{}
	for _, c := range codes.All() {
		known[string(c)] = true
	}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "codes", "node_modules", "testdata", ".git", "bench", "compat", "examples":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if g, ok := n.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, sp := range g.Specs {
					for _, v := range sp.(*ast.ValueSpec).Values {
						if sel, ok := v.(*ast.SelectorExpr); ok && !strings.HasPrefix(path, "../worker-sdk/") {
							if x, ok := sel.X.(*ast.Ident); ok && x.Name == "codes" {
								t.Errorf("%s re-declares codes.%s: name it as codes.%[2]s", path, sel.Sel.Name)
							}
						}
						if l, ok := v.(*ast.BasicLit); ok && l.Kind == token.STRING {
							if s, err := strconv.Unquote(l.Value); err == nil && known[s] {
								t.Errorf("%s declares a constant of code %q: name the one in package codes", path, s)
							}
						}
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

package trine_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestDocExampleIsExample: every line of the package doc's code, up to a
// "{ ... }", stands at the start of a line of Example, which the compiler
// and its // Output check; so the doc cannot drift from the API.
func TestDocExampleIsExample(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	doc, err := parser.ParseFile(fset, "doc.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := parser.ParseFile(fset, "example_test.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var body []string
	for _, d := range ex.Decls {
		if f, ok := d.(*ast.FuncDecl); ok && f.Name.Name == "Example" {
			for _, l := range strings.Split(string(src[fset.Position(f.Body.Pos()).Offset:fset.Position(f.Body.End()).Offset]), "\n") {
				body = append(body, strings.TrimSpace(l))
			}
		}
	}
	if body == nil {
		t.Fatal("example_test.go has no Example")
	}
	n := 0
	for _, l := range strings.Split(doc.Doc.Text(), "\n") {
		if !strings.HasPrefix(l, "\t") {
			continue
		}
		n++
		want, _, _ := strings.Cut(strings.TrimSpace(l), " ... }")
		found := false
		for _, b := range body {
			found = found || strings.HasPrefix(b, want)
		}
		if !found {
			t.Errorf("doc.go's %q is not in Example", strings.TrimSpace(l))
		}
	}
	if n == 0 {
		t.Fatal("doc.go shows no code")
	}
}

// Command gen builds the console's assets: web/src/main.ts (which imports
// @trine/client from clients/js/src) bundled and minified by esbuild into
// dist/console.js; web/index.html and web/style.css are embedded as they
// are. Run from the console directory (go generate ./console).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "console/gen:", err)
		os.Exit(1)
	}
}

func run() error {
	client, err := filepath.Abs("../clients/js/src/index.ts")
	if err != nil {
		return err
	}
	res := api.Build(api.BuildOptions{
		EntryPoints: []string{"web/src/main.ts"}, Bundle: true, Format: api.FormatESModule, Target: api.ES2020,
		MinifyWhitespace: true, MinifyIdentifiers: true, MinifySyntax: true, LegalComments: api.LegalCommentsNone,
		Alias: map[string]string{"@trine/client": client}, Outfile: "dist/console.js", Write: false,
	})
	if len(res.Errors) > 0 {
		return fmt.Errorf("bundle:\n%s", strings.Join(api.FormatMessages(res.Errors, api.FormatMessagesOptions{Kind: api.ErrorMessage}), ""))
	}
	if err := os.MkdirAll("dist", 0o755); err != nil {
		return err
	}
	for _, f := range res.OutputFiles {
		if err := os.WriteFile(filepath.Join("dist", filepath.Base(f.Path)), f.Contents, 0o644); err != nil {
			return err
		}
	}
	return nil
}

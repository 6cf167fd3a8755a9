// Package bundle builds the console's script: console/web/src/main.ts and
// what it imports, @trine/client from clients/js/src included, bundled and
// minified by esbuild's Go API. console/gen writes it to
// console/dist/console.js; the console's tests check that file is current.
//
// Concurrency: Build may be called concurrently; it starts no goroutines
// that outlive it (esbuild's own end with the build).
package bundle

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
)

// Build bundles the console found in dir (the console directory of the
// repository) and returns console.js.
func Build(dir string) ([]byte, error) {
	client, err := filepath.Abs(filepath.Join(dir, "..", "clients", "js", "src", "index.ts"))
	if err != nil {
		return nil, err
	}
	res := api.Build(api.BuildOptions{
		EntryPoints: []string{filepath.Join(dir, "web", "src", "main.ts")}, Bundle: true, Format: api.FormatESModule, Target: api.ES2020,
		MinifyWhitespace: true, MinifyIdentifiers: true, MinifySyntax: true, LegalComments: api.LegalCommentsNone,
		Alias: map[string]string{"@trine/client": client}, Write: false,
	})
	if len(res.Errors) > 0 {
		return nil, fmt.Errorf("bundle the console:\n%s", strings.Join(api.FormatMessages(res.Errors, api.FormatMessagesOptions{Kind: api.ErrorMessage}), ""))
	}
	return res.OutputFiles[0].Contents, nil
}

// Package console serves Trine's live console: a page built on
// @trine/client (clients/js) that shows a running engine through the same
// public contract every client uses (the engine's functions, called
// through an iii listener with the console user's token, and live groups
// from the stream listener). It has no private API: the server side only
// serves the embedded assets, says where the listeners are, and admits the
// user (Config.Open, or a token Config.Admit accepts).
//
// The script dist/console.js is generated from web/src by `go generate
// ./console` (gen/ and internal/bundle, esbuild's Go API) and committed,
// so building the binary needs no npm; TestBundleIsCurrent and `make
// check` fail when it is stale.
//
// Concurrency: a Handler is safe for concurrent use and starts no
// goroutines.
package console

//go:generate go run ./gen

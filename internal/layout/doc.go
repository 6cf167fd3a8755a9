// Package layout holds the tests that keep the tree's shape: which
// packages may import which, and what every production package states in
// its doc comment. It has no code of its own.
//
// Concurrency: the package has nothing to call and starts no goroutines.
package layout

// Package defaults fills in a config's unset fields, so that every
// package's withDefaults reads as one line per field with the rule in one
// place: a number or duration at zero or below takes its default, and a
// nil logger discards.
//
// Concurrency: the functions write only through the pointers they are
// given and start no goroutines.
package defaults

import (
	"log/slog"
	"time"
)

// Positive sets *v to d when *v is zero or negative.
func Positive[T int | int64 | uint64 | float64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Logger sets *l to a logger that discards when it is nil.
func Logger(l **slog.Logger) {
	if *l == nil {
		*l = slog.New(slog.DiscardHandler)
	}
}

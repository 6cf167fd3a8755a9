package loadgen

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

var startTime = time.Now()

// Progress prints a progress line, "# <seconds since start> <message>", to
// stderr.
func Progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "# %6.1fs "+format+"\n", append([]any{time.Since(startTime).Seconds()}, args...)...)
}

// NewTable returns a tabwriter to stdout for the tools' tables: columns
// aligned right, two spaces apart. Cells end with a tab; call Flush.
func NewTable() *tabwriter.Writer {
	return tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
}

// Verdict is "met" or "NOT met".
func Verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// Ratio is a/b, or 0 if b is 0.
func Ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Micros is d in microseconds.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Percent is cpu as a percentage of wall (100: one core).
func Percent(cpu, wall time.Duration) float64 {
	if wall == 0 {
		return 0
	}
	return 100 * float64(cpu) / float64(wall)
}

// RoundLatency rounds a latency for a table: to 1 µs below 1 ms, to 10 µs
// below 10 ms, else to 100 µs.
func RoundLatency(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// Human formats a rate: 1234567 -> 1.23M, 12345 -> 12.3k, 1234 -> 1234.
func Human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// OneLine is err's text on one line, cut at 300 bytes.
func OneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

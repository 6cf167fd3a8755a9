package cronmodule

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser reads iii's six fields, sec min hour dom month dow, and the
// @every/@daily descriptors.
var parser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// schedule is a parsed expression: robfig/cron's schedule, the years of
// a seventh field (nil: every year), and the zone its fields are read in.
type schedule struct {
	s     cron.Schedule
	years []yearRange
	loc   *time.Location
}

type yearRange struct{ from, to, step int }

// maxYearSkips bounds the search for the next fire in an allowed year.
const maxYearSkips = 100000

// parseSchedule parses an expression of 6 fields, or 7 with year, read in
// the IANA time zone tz ("" is UTC). The process's own zone never counts.
func parseSchedule(expr, tz string) (schedule, error) {
	loc, err := location(tz)
	if err != nil {
		return schedule{}, err
	}
	f := strings.Fields(expr)
	var years []yearRange
	if len(f) == 7 {
		if years, err = parseYears(f[6]); err != nil {
			return schedule{}, err
		}
		f = f[:6]
	} else if len(f) != 6 && !strings.HasPrefix(strings.TrimSpace(expr), "@") {
		return schedule{}, fmt.Errorf("expression %q has %d fields: want 6 (sec min hour dom month dow) or 7 (and year)", expr, len(f))
	}
	s, err := parser.Parse(strings.Join(f, " "))
	if err != nil {
		return schedule{}, fmt.Errorf("expression %q: %v", expr, err)
	}
	return schedule{s: s, years: years, loc: loc}, nil
}

// location loads an IANA zone name; "" is UTC. "Local", the process's
// zone, is refused: it would make a fleet's engines disagree.
func location(tz string) (*time.Location, error) {
	if tz == "" {
		return time.UTC, nil
	}
	if tz == "Local" || strings.TrimSpace(tz) != tz {
		return nil, fmt.Errorf("timezone %q is not an IANA time zone name (like \"UTC\" or \"Europe/Paris\")", tz)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("timezone %q is not an IANA time zone name (like \"UTC\" or \"Europe/Paris\")", tz)
	}
	return loc, nil
}

func parseYears(field string) ([]yearRange, error) {
	var out []yearRange
	for part := range strings.SplitSeq(field, ",") {
		r := yearRange{from: 1970, to: 2999, step: 1}
		spec, step, hasStep := strings.Cut(part, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("year field %q: bad step %q", field, step)
			}
			r.step = n
		}
		switch {
		case spec == "*" || spec == "?":
		case strings.Contains(spec, "-"):
			a, b, _ := strings.Cut(spec, "-")
			from, err1 := strconv.Atoi(a)
			to, err2 := strconv.Atoi(b)
			if err1 != nil || err2 != nil || from > to {
				return nil, fmt.Errorf("year field %q: bad range %q", field, spec)
			}
			r.from, r.to = from, to
		default:
			y, err := strconv.Atoi(spec)
			if err != nil {
				return nil, fmt.Errorf("year field %q: bad year %q", field, spec)
			}
			r.from = y
			if !hasStep {
				r.to = y
			}
		}
		if r.from < 1970 || r.to > 2999 {
			return nil, fmt.Errorf("year field %q: years are 1970 to 2999", field)
		}
		out = append(out, r)
	}
	return out, nil
}

func (s schedule) yearOK(y int) bool {
	if s.years == nil {
		return true
	}
	for _, r := range s.years {
		if y >= r.from && y <= r.to && (y-r.from)%r.step == 0 {
			return true
		}
	}
	return false
}

// next is the first fire after t, or the zero time when there is none.
func (s schedule) next(t time.Time) time.Time {
	if s.loc != nil {
		t = t.In(s.loc)
	}
	for range maxYearSkips {
		n := s.s.Next(t)
		if n.IsZero() || s.yearOK(n.Year()) {
			return n
		}
		if n.Year() > 2999 {
			return time.Time{}
		}
		// Jump to the end of this disallowed year.
		t = time.Date(n.Year()+1, 1, 1, 0, 0, 0, 0, n.Location()).Add(-time.Second)
	}
	return time.Time{}
}

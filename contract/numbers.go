package contract

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// The numbers a value or a schema may hold. The validator compares numbers
// as exact fractions (math/big), which keeps precision but makes 1e1000000
// a million-digit number (150 ms to build) and leaves 1e100000000 unbuilt
// (it then crashes on it), so longer numbers and larger exponents are
// refused before it sees them. float64 ends at 1.8e308; a 128-bit integer
// has 39 digits.
const (
	MaxNumberChars    = 100
	MaxNumberExponent = 400
)

// badNumber finds the first number in v (decoded with json.Number) that
// is out of range, in key order, and returns its JSON pointer.
func badNumber(v any, at []string) ([]string, bool) {
	if !hasBadNumber(v) {
		return nil, false // the common case, without allocating
	}
	return firstBadNumber(v, at)
}

func hasBadNumber(v any) bool {
	switch v := v.(type) {
	case json.Number:
		return !numberInRange(string(v))
	case map[string]any:
		for _, x := range v {
			if hasBadNumber(x) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if hasBadNumber(x) {
				return true
			}
		}
	}
	return false
}

func firstBadNumber(v any, at []string) ([]string, bool) {
	switch v := v.(type) {
	case json.Number:
		if !numberInRange(string(v)) {
			return at, true
		}
	case map[string]any:
		for _, k := range sortedKeys(v) {
			if p, bad := firstBadNumber(v[k], append(slices.Clip(at), k)); bad {
				return p, true
			}
		}
	case []any:
		for i, x := range v {
			if p, bad := firstBadNumber(x, append(slices.Clip(at), strconv.Itoa(i))); bad {
				return p, true
			}
		}
	}
	return nil, false
}

// numberInRange reports whether a JSON number literal is at most
// MaxNumberChars long and its exponent, as in scientific notation with
// one digit before the point (123e5 is 1.23e7), within ±MaxNumberExponent.
func numberInRange(n string) bool {
	if len(n) > MaxNumberChars {
		return false
	}
	mant, exp, hasExp := strings.Cut(strings.ToLower(n), "e")
	e := 0
	if hasExp {
		var err error
		if e, err = strconv.Atoi(exp); err != nil {
			return false
		}
	}
	intPart, _, _ := strings.Cut(strings.TrimPrefix(mant, "-"), ".")
	e += len(intPart) - 1
	return e >= -MaxNumberExponent && e <= MaxNumberExponent
}

const numberRule = "number out of range (at most 100 characters, exponent within ±400)"

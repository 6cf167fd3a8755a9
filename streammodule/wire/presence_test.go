package wire_test

import (
	"testing"

	"github.com/trinehq/trine/streammodule/wire"
)

// TestPageMembersSameSpelling: a real identity and an anonymous one
// spelled the same ("anon:X") never end up on either side of a page
// boundary, so paging by `after` (an identity) skips neither.
func TestPageMembersSameSpelling(t *testing.T) {
	ms := []wire.Member{{Identity: "a"}, {Identity: "anon:X"}, {Identity: "anon:X", Anonymous: true}, {Identity: "b"}}
	wire.SortMembers(ms)
	var got []wire.Member
	after := ""
	for range len(ms) + 1 {
		page, more := wire.PageMembers(ms, after, 2)
		got = append(got, page...)
		if !more {
			break
		}
		after = page[len(page)-1].Identity
	}
	if len(got) != len(ms) {
		t.Fatalf("paging by 2 saw %d members of %d: %+v", len(got), len(ms), got)
	}
	for i := range ms {
		if got[i].Key() != ms[i].Key() {
			t.Fatalf("member %d: %+v, want %+v", i, got[i], ms[i])
		}
	}
}

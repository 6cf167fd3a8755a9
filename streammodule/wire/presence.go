package wire

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
)

// Member is one identity present in a group: what presence frames and
// stream::presence carry.
type Member struct {
	Identity string `json:"identity"`
	// Anonymous marks a connection without an identity of its own: it is
	// never merged with a real identity spelled the same.
	Anonymous   bool            `json:"anonymous,omitempty"`
	Connections int             `json:"connections"`
	JoinedAt    int64           `json:"joined_at"`
	Meta        json.RawMessage `json:"meta,omitempty"`
	// MetaAt is when Meta was set (milliseconds); it picks the latest
	// meta among gateways and never reaches browsers.
	MetaAt int64 `json:"meta_at,omitempty"`
}

// MemberKey tells members apart: anonymous ones never meet real ones.
type MemberKey struct {
	Identity  string
	Anonymous bool
}

// Key is m's key.
func (m Member) Key() MemberKey { return MemberKey{m.Identity, m.Anonymous} }

// Public is m as browsers see it.
func (m Member) Public() Member { m.MetaAt = 0; return m }

// CompareKeys orders members by identity, anonymous ones after real ones
// of the same spelling.
func CompareKeys(a, b MemberKey) int {
	if c := cmp.Compare(a.Identity, b.Identity); c != 0 {
		return c
	}
	switch {
	case a.Anonymous == b.Anonymous:
		return 0
	case b.Anonymous:
		return -1
	}
	return 1
}

// PresenceEntry is one gateway's members of one group, as gateways share
// it (each gateway writes its own entry, and renews it by heartbeat).
type PresenceEntry struct {
	Members []Member `json:"members"`
}

// Combine merges b into a (the same key from two places): connections
// add up, the earliest join and the latest meta win.
func Combine(a, b Member) Member {
	a.Connections += b.Connections
	if a.JoinedAt == 0 || (b.JoinedAt != 0 && b.JoinedAt < a.JoinedAt) {
		a.JoinedAt = b.JoinedAt
	}
	if b.Meta != nil && (a.Meta == nil || b.MetaAt > a.MetaAt) {
		a.Meta, a.MetaAt = b.Meta, b.MetaAt
	}
	return a
}

// MergeEntries merges gateways' entries into one list of members in key
// order.
func MergeEntries(entries []PresenceEntry) []Member {
	byKey := map[MemberKey]Member{}
	for _, e := range entries {
		for _, m := range e.Members {
			if m.Connections <= 0 {
				continue
			}
			if old, ok := byKey[m.Key()]; ok {
				m = Combine(old, m)
			}
			byKey[m.Key()] = m
		}
	}
	out := make([]Member, 0, len(byKey))
	for _, m := range byKey {
		out = append(out, m.Public())
	}
	SortMembers(out)
	return out
}

// SortMembers sorts ms in key order.
func SortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int { return CompareKeys(a.Key(), b.Key()) })
}

// PageMembers returns the members of sorted ms after after (an identity),
// at most limit, and whether more follow. A real member and an anonymous
// one of the same spelling go on the same page (one more than limit, if
// need be), so that after, an identity, never falls between them.
func PageMembers(ms []Member, after string, limit int) ([]Member, bool) {
	i := 0
	if after != "" {
		i, _ = slices.BinarySearchFunc(ms, after, func(m Member, id string) int {
			if m.Identity <= id {
				return -1
			}
			return 1
		})
	}
	rest := ms[i:]
	if limit > 0 && len(rest) > limit && rest[limit].Identity == rest[limit-1].Identity {
		limit++
	}
	if len(rest) > limit {
		return rest[:limit], true
	}
	return rest, false
}

// PresenceSync encodes a presence sync event (members in order).
func PresenceSync(members []Member) []byte {
	b := append(make([]byte, 0, 64+64*len(members)), `{"type":"presence","event":{"type":"sync","members":`...)
	b = appendMembers(b, members)
	return append(b, "}}"...)
}

// PresenceMember encodes a join, leave or update event of m.
func PresenceMember(kind string, m Member) []byte {
	b := append(make([]byte, 0, 160), `{"type":"presence","event":{"type":`...)
	b = String(b, kind)
	b = append(b, `,"member":`...)
	mb, _ := json.Marshal(m.Public())
	b = append(b, mb...)
	return append(b, "}}"...)
}

// PresenceCount encodes the count event of a group too large for members.
func PresenceCount(n int) []byte {
	b := append(make([]byte, 0, 64), `{"type":"presence","event":{"type":"count","count":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, "}}"...)
}

// PresencePage encodes a page of members.
func PresencePage(members []Member, count int, more bool) []byte {
	b := append(make([]byte, 0, 64+64*len(members)), `{"type":"presence","event":{"type":"page","members":`...)
	b = appendMembers(b, members)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(count), 10)
	b = append(b, `,"more":`...)
	b = strconv.AppendBool(b, more)
	return append(b, "}}"...)
}

func appendMembers(b []byte, members []Member) []byte {
	b = append(b, '[')
	for i, m := range members {
		if i > 0 {
			b = append(b, ',')
		}
		mb, _ := json.Marshal(m.Public())
		b = append(b, mb...)
	}
	return append(b, ']')
}

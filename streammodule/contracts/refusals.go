package contracts

import (
	"container/list"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
)

// Defaults for RefusalLimits.
const (
	DefaultRefusalsPerName   = 50
	DefaultRefusalsNameBytes = 64 << 10
	DefaultRefusalsBytes     = 4 << 20
)

// refusalFieldBytes bounds each text of a Refusal (the item id, the
// message, the caller's names): longer ones are cut, marked "...".
const refusalFieldBytes = 512

// refusalOverhead is what a kept Refusal costs besides its texts: the
// struct, its two list elements and its map share, counted against the
// byte bounds.
const refusalOverhead = 256

// RefusalLimits bounds the recent refusals a Set keeps: per stream (or
// scope) in count and bytes, and in bytes in all. Past a bound the oldest
// go. The zero value is valid: each field has its Default.
type RefusalLimits struct {
	// PerName is how many refusals are kept per name. Default
	// DefaultRefusalsPerName.
	PerName int
	// NameBytes bounds those refusals in bytes. Default
	// DefaultRefusalsNameBytes.
	NameBytes int
	// Bytes bounds the refusals of every name together. Default
	// DefaultRefusalsBytes.
	Bytes int
}

func (l RefusalLimits) withDefaults() RefusalLimits {
	if l.PerName <= 0 {
		l.PerName = DefaultRefusalsPerName
	}
	if l.NameBytes <= 0 {
		l.NameBytes = DefaultRefusalsNameBytes
	}
	if l.Bytes <= 0 {
		l.Bytes = DefaultRefusalsBytes
	}
	return l
}

// Caller is who made a refused write, as far as this engine knows: the
// worker (its id, name, transport and mTLS identity), or nothing for a
// call no worker of this engine made (a trigger, an HTTP trigger,
// another engine).
type Caller struct {
	WorkerID  string `json:"worker_id,omitempty"`
	Name      string `json:"name,omitempty"`
	Transport string `json:"transport,omitempty"`
	Identity  string `json:"identity,omitempty"`
}

// Refusal is one write a contract refused. It holds no part of the
// value that was refused.
type Refusal struct {
	Time     time.Time `json:"time"`
	Function string    `json:"function"`
	Group    string    `json:"group_id"`
	Item     string    `json:"item_id,omitempty"`
	// EventType is the type of a refused stream::send.
	EventType string `json:"event_type,omitempty"`
	// Version is the contract version in force.
	Version uint64 `json:"version"`
	// Error is the pointer and the rule that failed
	// ("/title: expected string, got number").
	Error  string `json:"error"`
	Caller Caller `json:"caller"`
}

// size is what r counts for against the byte bounds.
func (r *Refusal) size() int {
	return refusalOverhead + len(r.Function) + len(r.Group) + len(r.Item) + len(r.EventType) + len(r.Error) +
		len(r.Caller.WorkerID) + len(r.Caller.Name) + len(r.Caller.Transport) + len(r.Caller.Identity)
}

// bound cuts r's texts to refusalFieldBytes each.
func (r *Refusal) bound() {
	for _, s := range []*string{&r.Function, &r.Group, &r.Item, &r.EventType, &r.Error, &r.Caller.WorkerID, &r.Caller.Name, &r.Caller.Transport, &r.Caller.Identity} {
		*s = cutText(*s, refusalFieldBytes)
	}
}

// cutText is s cut to at most n bytes on a rune boundary, marked "...".
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return strings.Clone(s[:cut]) + "..."
}

// RefusalText is what a Refusal keeps of err, a refusal of a write by
// function fn: the pointers and rules, without fn's name or what the
// refusal means ("; nothing was written").
func RefusalText(fn string, err error) string {
	var ce *contract.Error
	if errors.As(err, &ce) {
		return ce.Message
	}
	msg := strings.TrimPrefix(engine.AsError(err).Message, fn+": ")
	if i := strings.LastIndex(msg, "; nothing was "); i > 0 {
		msg = msg[:i]
	}
	return msg
}

// refusals keeps recent refusals per name, oldest first, within its
// limits.
type refusals struct {
	mu     sync.Mutex
	limits RefusalLimits
	names  map[string]*nameRefusals
	all    list.List // of *kept, oldest first
	bytes  int
}

// nameRefusals is one name's kept refusals.
type nameRefusals struct {
	l       list.List // of *kept, oldest first
	bytes   int
	refused uint64 // refusals recorded since the first one kept
	dropped uint64 // of which were let go for the bounds
}

// kept is a Refusal held in both lists.
type kept struct {
	r        Refusal
	name     string
	size     int
	inName   *list.Element
	inAll    *list.Element
	nameList *nameRefusals
}

func (rs *refusals) add(name string, r Refusal) {
	r.bound()
	k := &kept{r: r, name: cutText(name, refusalFieldBytes), size: r.size() + min(len(name), refusalFieldBytes)}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	l := rs.limits.withDefaults()
	if rs.names == nil {
		rs.names = map[string]*nameRefusals{}
	}
	n := rs.names[name]
	if n == nil {
		n = &nameRefusals{}
		rs.names[name] = n
	}
	n.refused++
	k.nameList = n
	k.inName = n.l.PushBack(k)
	k.inAll = rs.all.PushBack(k)
	n.bytes += k.size
	rs.bytes += k.size
	for n.l.Len() > l.PerName || (n.bytes > l.NameBytes && n.l.Len() > 1) {
		rs.drop(n.l.Front().Value.(*kept))
	}
	for rs.bytes > l.Bytes && rs.all.Len() > 1 {
		rs.drop(rs.all.Front().Value.(*kept))
	}
}

// drop lets k go; a name left with none is forgotten.
func (rs *refusals) drop(k *kept) {
	n := k.nameList
	n.l.Remove(k.inName)
	rs.all.Remove(k.inAll)
	n.bytes -= k.size
	rs.bytes -= k.size
	n.dropped++
	if n.l.Len() == 0 {
		delete(rs.names, k.name)
	}
}

// Refusals is one name's recent refusals, newest first.
type Refusals struct {
	Name     string    `json:"stream_name"`
	Refusals []Refusal `json:"refusals"`
	// Held is how many are kept now; Refused how many were recorded
	// since the oldest kept run began (the record of a name is forgotten
	// when its last refusal goes), Dropped how many of those were let go
	// for the bounds.
	Held    int    `json:"held"`
	Refused uint64 `json:"refused"`
	Dropped uint64 `json:"dropped"`
	// The bounds: per name in count and bytes, and in bytes in all.
	MaxPerName   int `json:"max_per_stream"`
	MaxNameBytes int `json:"max_stream_bytes"`
	MaxBytes     int `json:"max_total_bytes"`
}

func (rs *refusals) get(name string, limit int) Refusals {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	l := rs.limits.withDefaults()
	out := Refusals{Name: name, Refusals: []Refusal{}, MaxPerName: l.PerName, MaxNameBytes: l.NameBytes, MaxBytes: l.Bytes}
	n := rs.names[name]
	if n == nil {
		return out
	}
	out.Held, out.Refused, out.Dropped = n.l.Len(), n.refused, n.dropped
	for e := n.l.Back(); e != nil && (limit <= 0 || len(out.Refusals) < limit); e = e.Prev() {
		out.Refusals = append(out.Refusals, e.Value.(*kept).r)
	}
	return out
}

// held returns the refusals kept in all: names, count and bytes.
func (rs *refusals) held() (names, count, bytes int) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.names), rs.all.Len(), rs.bytes
}

// KeepRefusals sets the bounds of the recent refusals the Set keeps. Call
// it before the module takes writes.
func (s *Set) KeepRefusals(l RefusalLimits) {
	s.refusals.mu.Lock()
	defer s.refusals.mu.Unlock()
	s.refusals.limits = l.withDefaults()
}

// Refuse records r, a write to name that its contract refused. Only names
// with a contract have refusals, so the names kept are bounded by the
// contracts defined, and their refusals by the Set's RefusalLimits.
func (s *Set) Refuse(name string, r Refusal) {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	s.refusals.add(name, r)
}

// Refusals returns name's recent refusals, newest first, at most limit
// (all kept when limit <= 0).
func (s *Set) Refusals(name string, limit int) Refusals { return s.refusals.get(name, limit) }

// RefusalsHeld returns what the Set keeps of refusals in all: the names,
// the refusals and their bytes.
func (s *Set) RefusalsHeld() (names, count, bytes int) { return s.refusals.held() }

// Package streamapi is the gateway's view of streams: the functions a
// gateway calls on the stream module, their inputs and results, and the
// payload of stream:join and stream:leave handlers. It holds types only,
// so that the gateway depends on it and not on the module.
//
// Concurrency: the package holds plain values and starts no goroutines.
package streamapi

import "encoding/json"

// DefaultMaxNameBytes bounds stream, group and item names unless
// configured otherwise, in the module and the gateway alike.
const DefaultMaxNameBytes = 1024

// Functions that let a gateway in another process (trine gateway) serve
// browsers: it takes events from NATS and asks the engine for snapshots,
// history and join decisions through these.
const (
	FnSnapshot = "engine::streams::snapshot"
	FnSince    = "engine::streams::since"
	FnJoin     = "engine::streams::join"
	FnLeave    = "engine::streams::leave"
)

// SnapshotRequest is the input of FnSnapshot.
type SnapshotRequest struct {
	StreamName string `json:"stream_name"`
	GroupID    string `json:"group_id"`
	ItemID     string `json:"item_id,omitempty"`
	Resync     bool   `json:"resync,omitempty"`
	// PageBytes, when above 0, asks for a built-in group's items one page
	// at a time: about that many bytes of values (at least one item) with
	// ids after After.
	PageBytes int    `json:"page_bytes,omitempty"`
	After     string `json:"after,omitempty"`
}

// SnapshotResult is its result: the whole sync frame, or a page of items,
// and the group sequence it reflects.
type SnapshotResult struct {
	Frame json.RawMessage `json:"frame,omitempty"`
	Seq   uint64          `json:"seq"`
	// Contract is the version of the stream's contract in force, 0 for
	// none: the sync frame's contractVersion.
	Contract uint64 `json:"contract_version,omitempty"`
	// A page: the items in id order, and whether more follow.
	Items []PageItem `json:"items"`
	More  bool       `json:"more,omitempty"`
}

// PageItem is one item of a snapshot page.
type PageItem struct {
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
}

// SinceRequest is the input of FnSince.
type SinceRequest struct {
	StreamName string `json:"stream_name"`
	GroupID    string `json:"group_id"`
	Since      uint64 `json:"since"`
}

// SinceResult is its result, as streammodule.Module.Since returns it.
type SinceResult struct {
	Frames []json.RawMessage `json:"frames"`
	Last   uint64            `json:"last"`
	OK     bool              `json:"ok"`
}

// JoinResult is the result of FnJoin; Reason says why a join was
// denied.
type JoinResult struct {
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason,omitempty"`
}

// Subscription is the payload of stream:join and stream:leave handlers.
type Subscription struct {
	SubscriptionID string          `json:"subscription_id"`
	StreamName     string          `json:"stream_name"`
	GroupID        string          `json:"group_id"`
	ID             *string         `json:"id"`
	Context        json.RawMessage `json:"context"`
	// Presence is set for a subscription that makes its connection a
	// presence member.
	Presence *SubscriptionPresence `json:"presence,omitempty"`
}

// SubscriptionPresence is who a presence subscription's member is.
type SubscriptionPresence struct {
	Identity  string          `json:"identity"`
	Anonymous bool            `json:"anonymous,omitempty"`
	Meta      json.RawMessage `json:"meta,omitempty"`
}

// Item is the subscription's item id, "" for a whole group.
func (s Subscription) Item() string {
	if s.ID == nil {
		return ""
	}
	return *s.ID
}

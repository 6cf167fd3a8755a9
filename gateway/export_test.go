package gateway

import "github.com/trinehq/trine/streammodule/streamapi"

// SnapshotWaiters is how many subscriptions of (stream, group, item) wait
// for the next shared snapshot read of the gateway (one not started yet).
func SnapshotWaiters(g *Gateway, stream, group, item string) int {
	return g.snapshots.waiting(streamapi.SnapshotRequest{StreamName: stream, GroupID: group, ItemID: item,
		PageBytes: g.cfg.SnapshotPageBytes})
}

// AuthFunction is the gateway's auth function.
func (g *Gateway) AuthFunction() string { return g.cfg.AuthFunction }

// PoolHandoffs is how many times connections were handed to the writer
// pool's queue (one push or one batch).
func PoolHandoffs(g *Gateway) int {
	g.pool.mu.Lock()
	defer g.pool.mu.Unlock()
	return g.pool.handoffs
}

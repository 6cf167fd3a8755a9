package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/trinehq/trine/bench/internal/loadgen"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/jsstore"
)

// The group-size part: what one write to the JetStream store costs in a
// group that already holds -group-items items, against the same write in
// an empty group, on one NATS node (a child process, file storage). The
// store runs in this process, so only the store's own I/O is measured;
// the writes alternate between the two groups in blocks, so that drift of
// the machine falls on both alike.

// groupSizeTarget: a write at -group-items costs at most this × a write
// at 0 items.
const groupSizeTarget = 1.3

func runGroupSizePart(tmp string, items, writes int) error {
	dir, err := os.MkdirTemp(tmp, "groupsize-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	cluster, err := startNATS(dir, 1)
	if err != nil {
		return err
	}
	defer func() { _ = cluster.stop() }()
	nc, err := nats.Connect(cluster.url(), nats.Name("bench-fleet-groupsize"))
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx := context.Background()
	s, err := jsstore.Open(ctx, nc, jsstore.Config{}, store.Options{})
	if err != nil {
		return err
	}
	defer s.Close()

	loadgen.Progress("group size: writing %d items into one group", items)
	t0 := time.Now()
	if err := fill(ctx, s, store.Key{Stream: "bench", Group: "full"}, items); err != nil {
		return err
	}
	loadgen.Progress("group size: filled in %v", time.Since(t0).Round(time.Millisecond))

	put := func(group string, n int) (time.Duration, error) {
		k := store.Key{Stream: "bench", Group: group, Item: "x"}
		start := time.Now()
		for i := range n {
			if _, err := s.Put(ctx, k, store.Cond{}, func(json.RawMessage, bool) (json.RawMessage, error) {
				return json.RawMessage(strconv.Itoa(i)), nil
			}); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	const blocks = 10
	var empty, full time.Duration
	if _, err := put("empty", 100); err != nil { // warm both up
		return err
	}
	if _, err := put("full", 100); err != nil {
		return err
	}
	for range blocks {
		de, err := put("empty", writes/blocks)
		if err != nil {
			return err
		}
		df, err := put("full", writes/blocks)
		if err != nil {
			return err
		}
		empty, full = empty+de, full+df
	}
	n := time.Duration(blocks * (writes / blocks))
	ratio := float64(full) / float64(empty)
	fmt.Println()
	fmt.Printf("jetstream store, one write (stream::set's store part, in process, 1 NATS node): %v at 0 items, %v at %d items in the group (%d writes each, alternating in %d blocks)\n",
		(empty / n).Round(time.Microsecond), (full / n).Round(time.Microsecond), items, n, blocks)
	fmt.Printf("target: a write at %d items ≤ %.1f× a write at 0 items: %.2f× — %s\n", items, groupSizeTarget, ratio, loadgen.Verdict(ratio <= groupSizeTarget))
	return nil
}

// fill writes n items into group k.Group, 16 writers at a time (they take
// turns on the group, but overlap their round trips).
func fill(ctx context.Context, s *jsstore.Store, k store.Key, n int) error {
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				k := k
				k.Item = "item" + strconv.Itoa(i)
				if _, err := s.Put(ctx, k, store.Cond{}, func(json.RawMessage, bool) (json.RawMessage, error) { return json.RawMessage(`{"n":1}`), nil }); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(slices.DeleteFunc(errs, func(err error) bool { return err == nil })...)
}

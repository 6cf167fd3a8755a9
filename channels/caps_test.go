package channels_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/poll"
)

// nopPeer is a worker connection that is never called back.
type nopPeer struct{}

func (nopPeer) Invoke(context.Context, engine.Invocation) error { return nil }
func (nopPeer) Cancel(string)                                   {}
func (nopPeer) ConfigureTrigger(context.Context, string, engine.Trigger, bool) error {
	return nil
}

// session attaches a worker session to v's engine: its calls carry its
// worker id, as a worker's over gRPC or iii do.
func (v *env) session(t *testing.T, name string) *engine.Session {
	t.Helper()
	s, err := v.e.Attach(engine.WorkerInfo{Name: name}, nopPeer{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func createAs(ctx context.Context, s *engine.Session) (w, r channels.Ref, err error) {
	out, err := s.Call(ctx, engine.Call{FunctionID: channels.FnCreate})
	if err != nil {
		return w, r, err
	}
	var res struct{ Writer, Reader channels.Ref }
	if err := json.Unmarshal(out, &res); err != nil {
		return w, r, err
	}
	return res.Writer, res.Reader, nil
}

// roundTrip checks that a channel of s carries a frame from writer to
// reader.
func (v *env) roundTrip(t *testing.T, s *engine.Session) {
	t.Helper()
	w, r, err := createAs(t.Context(), s)
	if err != nil {
		t.Fatalf("create as %s: %v", s.ID(), err)
	}
	wc, rc := v.dial(t, w), v.dial(t, r)
	if err := wc.Write(t.Context(), websocket.MessageText, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, rc); got != "still here" {
		t.Fatalf("reader got %q", got)
	}
	_ = wc.Close(websocket.StatusNormalClosure, "")
}

// flood opens the writer of each ref and writes frames of size into it
// until total bytes are written or its context ends; the channels have no
// reader. It returns a stop function that ends the writers and waits.
func (v *env) flood(t *testing.T, refs []channels.Ref, size, total int) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for _, ref := range refs {
		c := v.dial(t, ref)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, size)
			for n := 0; n < total; n += size {
				if c.Write(ctx, websocket.MessageBinary, buf) != nil {
					return
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// steady waits until the hub's buffered bytes stop growing and returns
// them.
func (v *env) steady(t *testing.T) int64 {
	t.Helper()
	last, since := int64(-1), time.Now()
	poll.CheckFor(t, 10*time.Second, func() error {
		if got := v.h.Buffered(); got != last || last == 0 {
			last, since = got, time.Now()
			return fmt.Errorf("buffered bytes still moving: %d", got)
		}
		if time.Since(since) < 200*time.Millisecond {
			return errors.New("buffered bytes not steady for 200ms yet")
		}
		return nil
	})
	return last
}

// A connection may have MaxConnChannels channels open; its next create is
// refused with overloaded, naming the flag, while another connection
// still creates and uses channels.
func TestCapChannelsPerConnection(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{MaxConnChannels: 3})
	hostile, other := v.session(t, "hostile"), v.session(t, "other")
	for i := range 3 {
		if _, _, err := createAs(t.Context(), hostile); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	_, _, err := createAs(t.Context(), hostile)
	if e := engine.AsError(err); e == nil || e.Code != codes.Overloaded || !strings.Contains(e.Message, "--channels-max-per-connection") {
		t.Fatalf("fourth create = %v, want overloaded naming --channels-max-per-connection", err)
	}
	if n := v.h.Len(); n != 3 {
		t.Fatalf("hub holds %d channels after a refusal, want 3", n)
	}
	v.roundTrip(t, other)
}

// The bytes buffered in the channels of one connection stop at
// MaxConnBufferBytes: its writers are no longer read, the engine's heap
// does not grow with what they send, and another connection's channel
// still carries frames.
func TestCapBytesPerConnection(t *testing.T) {
	// Not parallel: the heap and the socket traffic are this test's own.
	const capBytes, frame = 1 << 20, 64 << 10
	v := newEnv(t, channels.Config{MaxConnBufferBytes: capBytes})
	hostile, other := v.session(t, "hostile"), v.session(t, "other")
	var refs []channels.Ref
	for range 8 {
		w, _, err := createAs(t.Context(), hostile)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, w)
	}
	before := heapInuse()
	stop := v.flood(t, refs, frame, 2<<20) // 8 x 2 MiB offered: 16 times the cap
	defer stop()
	got := v.steady(t)
	if got > capBytes {
		t.Fatalf("the hostile connection buffers %d bytes, the cap is %d", got, capBytes)
	}
	if got < capBytes-frame {
		t.Fatalf("the hostile connection buffers %d bytes: its writers were held back below the cap %d", got, capBytes)
	}
	// Each writer may hold a frame of its socket's and the server's
	// buffers besides: far below the 16 MiB offered.
	grew := int64(heapInuse()) - int64(before)
	if grew > 16<<20 {
		t.Fatalf("heap grew by %d bytes under a flood capped at %d", grew, capBytes)
	}
	t.Logf("8 writers offering 16 MiB: %d bytes buffered, heap in use grew by %d bytes", got, grew)
	v.roundTrip(t, other)
}

// The bytes buffered in all channels stop at MaxTotalBufferBytes, however
// many connections write; a writer past it waits, and goes on once a
// reader drains.
func TestCapBytesTotal(t *testing.T) {
	// Not parallel: the heap and the socket traffic are this test's own.
	const total, frame = 1 << 20, 64 << 10
	v := newEnv(t, channels.Config{MaxTotalBufferBytes: total})
	var refs, readers []channels.Ref
	for i := range 4 {
		s := v.session(t, fmt.Sprintf("writer-%d", i))
		for range 2 {
			w, r, err := createAs(t.Context(), s)
			if err != nil {
				t.Fatal(err)
			}
			refs, readers = append(refs, w), append(readers, r)
		}
	}
	stop := v.flood(t, refs, frame, 1<<20)
	defer stop()
	if got := v.steady(t); got > total || got < total-frame {
		t.Fatalf("channels buffer %d bytes, want the total cap %d (within a frame)", got, total)
	}
	// Readers come: every writer goes on to the end, and the cap holds
	// all along.
	var wg sync.WaitGroup
	errs := make(chan error, len(readers))
	for _, r := range readers {
		rc := v.dial(t, r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			for n := 0; n < 1<<20; {
				_, data, err := rc.Read(ctx)
				if err != nil {
					errs <- fmt.Errorf("reader after %d bytes: %w", n, err)
					return
				}
				if got := v.h.Buffered(); got > total {
					errs <- fmt.Errorf("channels buffer %d bytes, the cap is %d", got, total)
					return
				}
				n += len(data)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// The channels a connection created are removed when it leaves: attached
// ends close with 1001 and their buffered bytes are given back.
func TestChannelsReleasedWithCreator(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	s, other := v.session(t, "leaving"), v.session(t, "staying")
	w, _, err := createAs(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := createAs(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	keep, _, err := createAs(t.Context(), other)
	if err != nil {
		t.Fatal(err)
	}
	wc := v.dial(t, w)
	if err := wc.Write(t.Context(), websocket.MessageBinary, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	poll.CheckFor(t, 5*time.Second, func() error {
		if n := v.h.Buffered(); n != 4096 {
			return fmt.Errorf("buffered %d, want 4096", n)
		}
		return nil
	})
	s.Close()
	v.waitLen(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), readTimeout)
	defer cancel()
	_, _, err = wc.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
		t.Fatalf("writer of a departed creator: %v, want close 1001", err)
	}
	poll.CheckFor(t, 5*time.Second, func() error {
		if n := v.h.Buffered(); n != 0 {
			return fmt.Errorf("buffered %d after the creator left, want 0", n)
		}
		return nil
	})
	if _, _, ok := v.h.Buffer(keep.ChannelID); !ok {
		t.Fatal("another connection's channel was removed")
	}
}

// Calls from no worker session share one allowance under a policy (the
// gRPC Trigger RPC of a restricted listener); trusted ones have none.
func TestCapChannelsWithoutSession(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{MaxConnChannels: 2})
	g, err := v.e.Authenticate(t.Context(), &engine.Access{ExposeFunctions: []engine.Filter{{Match: "api::*"}}}, engine.AuthInput{})
	if err != nil {
		t.Fatal(err)
	}
	restricted := func() error {
		_, err := v.e.Trigger(t.Context(), engine.Call{FunctionID: channels.FnCreate, Grant: g})
		return err
	}
	for i := range 2 {
		if err := restricted(); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	if err := restricted(); engine.AsError(err).Code != codes.Overloaded {
		t.Fatalf("third create under a policy from no session = %v, want overloaded", err)
	}
	for range 3 {
		v.create(t, `{}`) // trusted, no session
	}
}

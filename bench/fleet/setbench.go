package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/bench/internal/loadgen"
	trine "github.com/trinehq/trine/worker-sdk"
)

// The stream::set part: writes per second and call latency of stream::set
// through the SDK, with a fixed number of concurrent callers, for the
// memory store and the JetStream store on 1- and 3-node NATS clusters, in
// two shapes: every caller writing to one group (whose writes the store
// serialises) and the callers spread over several groups.

// jetStreamWritesTarget: with callers spread over groups, the JetStream
// store on one node does at least this × the memory store's writes/s.
const jetStreamWritesTarget = 0.5

// hotGroupTarget: every caller writing one group of the JetStream store
// on a 3-node cluster (3 replicas) takes at least this many writes/s.
const hotGroupTarget = 5000

const (
	setStream      = "bench-set"
	setCallTimeout = 30 * time.Second
)

// setEnv is what every stream::set configuration needs.
type setEnv struct {
	tmp        string
	trineBin   string
	callers    int
	groups     int // groups of the spread shape
	payload    int
	warmup     time.Duration
	duration   time.Duration
	twoEngines bool
}

// setConfig is one store setup.
type setConfig struct {
	name    string
	nodes   int // NATS nodes; 0: --store memory
	engines int
}

// setShape is how the callers pick their group.
type setShape struct {
	name   string
	groups int // caller i writes group i mod groups
}

func (s setShape) group(caller int) string {
	if s.groups == 1 {
		return "one"
	}
	return fmt.Sprintf("g%03d", caller%s.groups)
}

// setResult is one configuration in one shape.
type setResult struct {
	config, shape string
	err           error
	writes        int64 // completed in the measured window
	errs          int64 // failed in the measured window
	otherErrs     int64 // failed in the warm-up or while draining
	firstErr      string
	total         int64 // every successful write, warm-up included
	elapsed       time.Duration
	p50, p99, max time.Duration
	engineCPU     time.Duration
	natsCPU       time.Duration
	benchCPU      time.Duration
	otherCPU      time.Duration
	seqs          string // "ok" or what is wrong with the sequences returned
}

func (r setResult) perSec() float64 {
	if r.elapsed == 0 {
		return 0
	}
	return float64(r.writes) / r.elapsed.Seconds()
}

// cpuPerWrite is the server processes' CPU time per write in the window.
func (r setResult) cpuPerWrite() time.Duration {
	if r.writes == 0 {
		return 0
	}
	return (r.engineCPU + r.natsCPU) / time.Duration(r.writes)
}

// engineListeningAny matches the listening line of an engine on any NATS.
var engineListeningAny = regexp.MustCompile(`^trine engine (\S+) listening: grpc=(\S+) http=(\S+) stream=(\S+) iii=\S+ nats=(\S+)$`)

// runSetPart measures every configuration and prints the results.
func runSetPart(env *setEnv) error {
	configs := []setConfig{
		{"memory", 0, 1},
		{"jetstream 1 node", 1, 1},
		{"jetstream 3 nodes", 3, 1},
	}
	if env.twoEngines {
		configs = append(configs, setConfig{"jetstream 3 nodes, 2 engines", 3, 2})
	}
	shapes := []setShape{{"1 group", 1}, {fmt.Sprintf("%d groups", env.groups), env.groups}}

	fmt.Printf("stream::set: %d concurrent callers (goroutines sharing one SDK worker per engine), item data {\"n\":…,\"pad\":%d B}, %v per shape after %v warm-up\n",
		env.callers, env.payload, env.duration, env.warmup)
	fmt.Println("servers: memory = `trine engine --store memory --nats-addr off`; jetstream N node(s) = `trine engine --store jetstream --store-replicas N --nats-url <every node>` on N NATS servers (JetStream, file storage), each a child process on this machine")
	fmt.Printf("shapes: 1 group = every caller writes its own item of one group; %d groups = caller i writes its own item of group i mod %d\n", env.groups, env.groups)

	var results []setResult
	var failed bool
	for _, c := range configs {
		rs, err := runSetConfig(env, c, shapes)
		if err != nil {
			loadgen.Progress("stream::set %s: %v", c.name, err)
			failed = true
			for _, s := range shapes {
				if !slices.ContainsFunc(rs, func(r setResult) bool { return r.shape == s.name }) {
					rs = append(rs, setResult{config: c.name, shape: s.name, err: err})
				}
			}
		}
		for _, r := range rs {
			if r.err != nil {
				failed = true
			}
		}
		results = append(results, rs...)
	}
	printSetResults(results, configs, shapes)
	if failed {
		return errors.New("stream::set: some configurations failed")
	}
	return nil
}

// runSetConfig starts the servers of c, measures every shape and stops
// them.
func runSetConfig(env *setEnv, c setConfig, shapes []setShape) (results []setResult, err error) {
	dir, err := os.MkdirTemp(env.tmp, "set-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	var cluster *natsCluster
	if c.nodes > 0 {
		t0 := time.Now()
		cluster, err = startNATS(dir, c.nodes)
		if err != nil {
			return nil, err
		}
		defer func() {
			if serr := cluster.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		loadgen.Progress("stream::set %s: NATS %s ready in %v", c.name, cluster.url(), time.Since(t0).Round(time.Millisecond))
	}
	var engines []*proc
	defer func() {
		if serr := stopProcs(engines); serr != nil && err == nil {
			err = serr
		}
	}()
	for i := range c.engines {
		args := []string{"engine", "--data-dir", filepath.Join(dir, fmt.Sprintf("engine%d", i+1)),
			"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0", "--iii-addr", "off", "--log-level", "warn"}
		if cluster == nil {
			args = append(args, "--store", "memory", "--nats-addr", "off")
		} else {
			args = append(args, "--store", "jetstream", "--store-replicas", strconv.Itoa(c.nodes), "--nats-url", cluster.url())
		}
		name := "engine"
		if c.engines > 1 {
			name = fmt.Sprintf("engine %d", i+1)
		}
		p, m, err := startProc(env.trineBin, name, engineListeningAny, nil, args...)
		if err != nil {
			return nil, err
		}
		p.grpc = m[2]
		engines = append(engines, p)
	}
	var workers []*trine.Worker
	defer func() {
		for _, w := range workers {
			_ = w.Close()
		}
	}()
	for i, e := range engines {
		w := trine.RegisterWorker(e.grpc, trine.WithName(fmt.Sprintf("bench-fleet-set-%d", i+1)), trine.WithCloseTimeout(time.Second))
		workers = append(workers, w)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := w.Connect(ctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("connect worker to %s: %w", e.Name, err)
		}
	}
	var pids []int
	var desc []string
	for _, e := range engines {
		pids = append(pids, e.PID)
		desc = append(desc, fmt.Sprintf("%s pid %d", e.Name, e.PID))
	}
	var natsPids []int
	if cluster != nil {
		natsPids = cluster.pids()
		for _, p := range cluster.nodes {
			desc = append(desc, fmt.Sprintf("%s pid %d", p.Name, p.PID))
		}
	}
	loadgen.Progress("stream::set %s: %s", c.name, strings.Join(desc, ", "))

	var total int64
	for _, s := range shapes {
		r := runSetShape(env, workers, s, pids, natsPids)
		r.config = c.name
		total += r.total
		results = append(results, r)
		if r.err != nil {
			loadgen.Progress("stream::set %s, %s: %v", c.name, s.name, r.err)
			return results, nil
		}
		loadgen.Progress("stream::set %s, %s: %s writes/s, p50 %v p99 %v, %d errors, sequences %s",
			c.name, s.name, loadgen.Human(r.perSec()), loadgen.RoundLatency(r.p50), loadgen.RoundLatency(r.p99), r.errs+r.otherErrs, r.seqs)
	}
	if cluster != nil {
		// Every successful write is one message of the store's stream.
		if msg := checkStoreStream(cluster.url(), total); msg != "" {
			for i := range results {
				results[i].seqs += "; " + msg
			}
		}
	}
	return results, nil
}

// checkStoreStream compares the writes TRINE_STREAMS has committed (the
// sum of its groups' sequences, on their head subjects) with the number of
// writes that succeeded; "" if they match.
func checkStoreStream(url string, writes int64) string {
	nc, err := nats.Connect(url, nats.Name("bench-fleet-check"))
	if err != nil {
		return fmt.Sprintf("TRINE_STREAMS not checked: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Sprintf("TRINE_STREAMS not checked: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	committed, err := committedWrites(ctx, js)
	if err != nil {
		return fmt.Sprintf("TRINE_STREAMS not checked: %v", err)
	}
	if committed != writes {
		return fmt.Sprintf("TRINE_STREAMS committed %d writes, the callers saw %d succeed", committed, writes)
	}
	return ""
}

// committedWrites sums the sequences of every group's head.
func committedWrites(ctx context.Context, js jetstream.JetStream) (int64, error) {
	st, err := js.Stream(ctx, "TRINE_STREAMS")
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("trine.kv.*.*.h"))
	if err != nil {
		return 0, err
	}
	var sum int64
	for subj := range info.State.Subjects {
		m, err := st.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			return 0, err
		}
		seq, err := strconv.ParseInt(m.Header.Get("Trine-Seq"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: no Trine-Seq", subj)
		}
		sum += seq
	}
	return sum, nil
}

// runSetShape runs env.callers goroutines calling stream::set for warmup
// then duration; caller i uses workers[i mod len(workers)].
func runSetShape(env *setEnv, workers []*trine.Worker, s setShape, enginePids, natsPids []int) setResult {
	res := setResult{shape: s.name}
	hist := new(loadgen.ShardedHistogram)
	var recording, stop atomic.Bool
	var writes, errs, otherErrs atomic.Int64
	var errMu sync.Mutex
	pad := strings.Repeat("x", env.payload)
	seqs := make([][]uint64, env.callers) // per caller, in call order
	var wg sync.WaitGroup
	for i := range env.callers {
		w := workers[i%len(workers)]
		prefix := `{"stream_name":"` + setStream + `","group_id":"` + s.group(i) + `","item_id":"c` + strconv.Itoa(i) + `","data":{"n":`
		suffix := `,"pad":"` + pad + `"}}`
		wg.Go(func() {
			var b []byte
			for n := 0; !stop.Load(); n++ {
				b = append(strconv.AppendInt(append(b[:0], prefix...), int64(n), 10), suffix...)
				ctx, cancel := context.WithTimeout(context.Background(), setCallTimeout)
				t0 := time.Now()
				out, err := w.Trigger(ctx, "stream::set", json.RawMessage(b))
				lat := time.Since(t0)
				cancel()
				rec := recording.Load()
				if err == nil {
					var seq uint64
					if seq, err = resultSeq(out); err == nil {
						seqs[i] = append(seqs[i], seq)
					}
				}
				if err != nil {
					if rec {
						errs.Add(1)
					} else {
						otherErrs.Add(1)
					}
					errMu.Lock()
					if res.firstErr == "" {
						res.firstErr = loadgen.OneLine(err)
					}
					errMu.Unlock()
					continue
				}
				if rec {
					hist.Shard(i).Record(int64(lat))
					writes.Add(1)
				}
			}
		})
	}
	readCPU := func(pids []int) (time.Duration, error) {
		var t time.Duration
		for _, pid := range pids {
			c, err := loadgen.CPUTime(pid)
			if err != nil {
				return 0, err
			}
			t += c
		}
		return t, nil
	}
	res.err = func() error {
		time.Sleep(env.warmup)
		e0, err1 := readCPU(enginePids)
		n0, err2 := readCPU(natsPids)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		cli0, busy0 := loadgen.SelfCPU(), loadgen.MachineBusy()
		t0 := time.Now()
		recording.Store(true)
		time.Sleep(env.duration)
		recording.Store(false)
		res.elapsed = time.Since(t0)
		res.benchCPU = loadgen.SelfCPU() - cli0
		busy := loadgen.MachineBusy() - busy0
		e1, err1 := readCPU(enginePids)
		n1, err2 := readCPU(natsPids)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		res.engineCPU, res.natsCPU = e1-e0, n1-n0
		res.otherCPU = max(0, busy-res.engineCPU-res.natsCPU-res.benchCPU)
		return nil
	}()
	stop.Store(true)
	wg.Wait()
	res.writes, res.errs, res.otherErrs = writes.Load(), errs.Load(), otherErrs.Load()
	snap := hist.Snapshot()
	res.p50, res.p99, res.max = snap.Quantile(0.50), snap.Quantile(0.99), snap.Max()
	for _, q := range seqs {
		res.total += int64(len(q))
	}
	res.seqs = checkSeqs(s, seqs)
	if res.writes == 0 && res.err == nil {
		res.err = fmt.Errorf("no write succeeded in the measured window (first error: %s)", res.firstErr)
	}
	return res
}

var seqField = []byte(`"seq":`)

// resultSeq takes the group sequence out of stream::set's result.
func resultSeq(out []byte) (uint64, error) {
	i := bytes.LastIndex(out, seqField)
	if i < 0 {
		return 0, fmt.Errorf("stream::set result without seq: %.200s", out)
	}
	v, n := loadgen.ParseUint(out[i+len(seqField):])
	if n == 0 {
		return 0, fmt.Errorf("stream::set result with a bad seq: %.200s", out)
	}
	return v, nil
}

// checkSeqs checks that the sequences returned for each group are 1, 2, …
// n: every write got its own sequence, none was skipped, and each caller
// saw its own sequences increase.
func checkSeqs(s setShape, seqs [][]uint64) string {
	byGroup := map[string][]uint64{}
	var problems []string
	for i, q := range seqs {
		g := s.group(i)
		for k := 1; k < len(q); k++ {
			if q[k] <= q[k-1] {
				problems = append(problems, fmt.Sprintf("caller %d got seq %d after %d", i, q[k], q[k-1]))
				break
			}
		}
		byGroup[g] = append(byGroup[g], q...)
	}
	for g, q := range byGroup {
		slices.Sort(q)
		for k, v := range q {
			if v != uint64(k+1) {
				what := "a gap"
				if k > 0 && v == q[k-1] {
					what = "a repeat"
				}
				problems = append(problems, fmt.Sprintf("group %s: %s at seq %d (%d writes)", g, what, v, len(q)))
				break
			}
		}
	}
	if len(problems) == 0 {
		return "ok"
	}
	slices.Sort(problems)
	if len(problems) > 3 {
		problems = append(problems[:3], fmt.Sprintf("and %d more", len(problems)-3))
	}
	return strings.Join(problems, "; ")
}

func printSetResults(results []setResult, configs []setConfig, shapes []setShape) {
	fmt.Println()
	tw := loadgen.NewTable()
	fmt.Fprintln(tw, "store\tshape\twrites/s\tp50\tp99\tmax\terrors\tengine CPU\tNATS CPU\tsrv µs/write\tbench CPU\tothers\t")
	for _, r := range results {
		if r.err != nil && r.writes == 0 {
			fmt.Fprintf(tw, "%s\t%s\tfailed\t\n", r.config, r.shape)
			continue
		}
		natsCPU := "-"
		if strings.HasPrefix(r.config, "jetstream") {
			natsCPU = fmt.Sprintf("%.0f%%", loadgen.Percent(r.natsCPU, r.elapsed))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%v\t%d\t%.0f%%\t%s\t%.0f\t%.0f%%\t%.0f%%\t\n", r.config, r.shape, loadgen.Human(r.perSec()),
			loadgen.RoundLatency(r.p50), loadgen.RoundLatency(r.p99), loadgen.RoundLatency(r.max), r.errs, loadgen.Percent(r.engineCPU, r.elapsed), natsCPU, loadgen.Micros(r.cpuPerWrite()),
			loadgen.Percent(r.benchCPU, r.elapsed), loadgen.Percent(r.otherCPU, r.elapsed))
	}
	tw.Flush()

	find := func(config, shape string) (setResult, bool) {
		for _, r := range results {
			if r.config == config && r.shape == shape && r.err == nil {
				return r, true
			}
		}
		return setResult{}, false
	}
	fmt.Println()
	tw = loadgen.NewTable()
	fmt.Fprintln(tw, "jetstream/memory\tshape\twrites/s\tp50\tp99\tsrv CPU/write\t")
	for _, c := range configs[1:] {
		for _, s := range shapes {
			js, ok1 := find(c.name, s.name)
			mem, ok2 := find(configs[0].name, s.name)
			if !ok1 || !ok2 {
				fmt.Fprintf(tw, "%s\t%s\tnot measured\t\n", c.name, s.name)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.1f\t%.1f\t%.1f\t\n", c.name, s.name, js.perSec()/mem.perSec(),
				loadgen.Ratio(js.p50, mem.p50), loadgen.Ratio(js.p99, mem.p99), loadgen.Ratio(js.cpuPerWrite(), mem.cpuPerWrite()))
		}
	}
	tw.Flush()
	spread := shapes[len(shapes)-1].name
	js, ok1 := find("jetstream 1 node", spread)
	mem, ok2 := find(configs[0].name, spread)
	if ok1 && ok2 {
		ratio := js.perSec() / mem.perSec()
		fmt.Printf("target: jetstream 1 node, %s, writes/s ≥ %.1f× memory's: %.2f× — %s\n", spread, jetStreamWritesTarget, ratio, loadgen.Verdict(ratio >= jetStreamWritesTarget))
	}
	if hot, ok := find("jetstream 3 nodes", shapes[0].name); ok && shapes[0].groups == 1 {
		fmt.Printf("target: jetstream 3 nodes, %s, writes/s ≥ %d: %.0f — %s\n", shapes[0].name, hotGroupTarget, hot.perSec(), loadgen.Verdict(hot.perSec() >= hotGroupTarget))
	}

	fmt.Println()
	for _, r := range results {
		var notes []string
		if r.err != nil {
			notes = append(notes, "failed: "+loadgen.OneLine(r.err))
		}
		if r.errs+r.otherErrs > 0 {
			notes = append(notes, fmt.Sprintf("%d calls failed in the window, %d in the warm-up or drain; first: %s", r.errs, r.otherErrs, r.firstErr))
		}
		seqs := r.seqs
		if seqs == "" {
			seqs = "not checked"
		}
		notes = append(notes, "sequences "+seqs)
		fmt.Printf("%s, %s: %d writes in all; %s\n", r.config, r.shape, r.total, strings.Join(notes, "; "))
	}
}

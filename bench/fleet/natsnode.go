package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// The NATS servers of the stream::set part are this program run again as
// child processes (with natsNodeEnv set), one per node: their CPU time is
// then theirs in /proc, they do not share the load generator's Go runtime,
// and Pdeathsig stops them if the bench dies.
const natsNodeEnv = "BENCH_FLEET_NATS_NODE"

var natsNodeReady = regexp.MustCompile(`^nats node (\S+) ready: client=(\S+)$`)

// natsNodeMain runs one NATS server with JetStream until SIGTERM or SIGINT.
// Flags: -name, -port (0: any free port), -cluster-port and -routes (a
// comma-separated list of nats-route:// URLs; none: a single server),
// -store (the JetStream directory). The options are internal/natstest's.
func natsNodeMain() {
	fs := flag.NewFlagSet("nats-node", flag.ExitOnError)
	name := fs.String("name", "n1", "server name")
	port := fs.Int("port", 0, "client port (0: any free port)")
	clusterPort := fs.Int("cluster-port", 0, "cluster port (0: no cluster)")
	routes := fs.String("routes", "", "comma-separated nats-route:// URLs of every node")
	nodes := fs.Int("nodes", 1, "nodes in the cluster")
	dir := fs.String("store", "", "JetStream store directory")
	_ = fs.Parse(os.Args[1:])

	opts := &server.Options{ServerName: *name, Host: "127.0.0.1", Port: *port,
		JetStream: true, StoreDir: *dir, NoLog: true, NoSigs: true}
	if *port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if *clusterPort > 0 {
		opts.Cluster = server.ClusterOpts{Name: "bench-fleet", Host: "127.0.0.1", Port: *clusterPort}
		opts.Routes = server.RoutesFromStr(*routes)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nats node %s: %v\n", *name, err)
		os.Exit(1)
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		fmt.Fprintf(os.Stderr, "nats node %s: not ready within 30s\n", *name)
		os.Exit(1)
	}
	// Every node is started at once; report ready once the routes to the
	// others are up.
	deadline := time.Now().Add(30 * time.Second)
	for ns.NumRoutes() < *nodes-1 {
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "nats node %s: %d routes after 30s, want %d\n", *name, ns.NumRoutes(), *nodes-1)
			os.Exit(1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("nats node %s ready: client=%s\n", *name, ns.ClientURL())
	<-sigc
	ns.Shutdown()
	ns.WaitForShutdown()
}

// natsCluster is n NATS nodes with JetStream, each a child process.
type natsCluster struct {
	nodes []*loadgen.Process
	urls  []string
}

// startNATS starts n nodes (a cluster if n > 1) storing under dir and
// waits until JetStream accepts a stream with n replicas.
func startNATS(dir string, n int) (*natsCluster, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	c := &natsCluster{nodes: make([]*loadgen.Process, n), urls: make([]string, n)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("n%d", i+1)
			args := []string{"-name", name, "-store", filepath.Join(dir, name), "-nodes", strconv.Itoa(n)}
			if n > 1 {
				args = append(args, "-port", strconv.Itoa(ports[i]), "-cluster-port", strconv.Itoa(ports[n+i]),
					"-routes", strings.Join(routes, ","))
			}
			p, m, err := loadgen.Start(loadgen.Command{Name: "nats " + name, Path: self, Args: args,
				Env: []string{natsNodeEnv + "=1"}, Listening: natsNodeReady, Infra: true})
			if err != nil {
				errs[i] = err
				return
			}
			c.nodes[i], c.urls[i] = p, m[2]
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = c.stop()
		return nil, err
	}
	if err := c.waitJetStream(n); err != nil {
		_ = c.stop()
		return nil, err
	}
	return c, nil
}

// url is the client URL list for --nats-url.
func (c *natsCluster) url() string { return strings.Join(c.urls, ",") }

// waitJetStream creates and deletes a throw-away stream with the given
// replicas until that works: the cluster then has a meta leader and its
// peers, and the engine's own streams can be created.
func (c *natsCluster) waitJetStream(replicas int) error {
	nc, err := nats.Connect(c.url(), nats.Name("bench-fleet-probe"))
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH_FLEET_PROBE", Subjects: []string{"bench-fleet.probe"},
			Storage: jetstream.MemoryStorage, Replicas: replicas})
		if err == nil {
			err = js.DeleteStream(ctx, "BENCH_FLEET_PROBE")
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("JetStream with %d replicas not available within 60s: %w", replicas, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop stops every node.
func (c *natsCluster) stop() error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range c.nodes {
		if p != nil {
			wg.Go(func() {
				err := p.Stop()
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *natsCluster) pids() []int {
	var out []int
	for _, p := range c.nodes {
		out = append(out, p.PID)
	}
	return out
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a real NATS cluster of in-process servers on loopback, with
// JetStream, whose nodes can be stopped and restarted on the same ports.
type Cluster struct {
	t     testing.TB
	Nodes []*server.Server
	opts  []*server.Options
}

// StartCluster runs an n-node cluster until the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ports := freePorts(t, 2*n)
	var routes []*url.URL
	for i := range n {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[n+i])})
	}
	c := &Cluster{t: t, Nodes: make([]*server.Server, n)}
	for i := range n {
		c.opts = append(c.opts, &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: ports[i],
			Cluster: server.ClusterOpts{Name: "trine-test", Host: "127.0.0.1", Port: ports[n+i]},
			Routes:  routes, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		})
	}
	for i := range n {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, ns := range c.Nodes {
			if ns != nil {
				ns.Shutdown()
				ns.WaitForShutdown()
			}
		}
	})
	c.waitRoutes()
	c.waitJetStream()
	return c
}

// waitJetStream waits until the cluster's JetStream has a meta leader.
func (c *Cluster) waitJetStream() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, ns := range c.Nodes {
			if ns != nil && ns.JetStreamIsLeader() {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatal("natstest: no JetStream meta leader after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	ns, err := server.NewServer(c.opts[i])
	if err != nil {
		c.t.Fatalf("natstest: node %d: %v", i+1, err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("natstest: node %d not ready", i+1)
	}
	c.Nodes[i] = ns
}

func (c *Cluster) waitRoutes() {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, ns := range c.Nodes {
		for ns != nil && ns.NumRoutes() < len(c.Nodes)-1 {
			if time.Now().After(deadline) {
				c.t.Fatalf("natstest: cluster did not form (%s has %d routes)", ns.Name(), ns.NumRoutes())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// URL is node i's client URL.
func (c *Cluster) URL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port)
}

// URLs lists every node's client URL, comma-separated, starting at node i.
func (c *Cluster) URLs(first int) string {
	var out []string
	for k := range c.opts {
		out = append(out, c.URL((first+k)%len(c.opts)))
	}
	return strings.Join(out, ",")
}

// Stop shuts node i down.
func (c *Cluster) Stop(i int) {
	c.Nodes[i].Shutdown()
	c.Nodes[i].WaitForShutdown()
	c.Nodes[i] = nil
}

// Restart starts a stopped node i again on its ports and waits for its
// routes.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.start(i)
	c.waitRoutes()
}

// RestartAll starts every stopped node again, all at once, as a cluster
// boots, and returns without waiting for routes or a JetStream leader.
func (c *Cluster) RestartAll() {
	c.t.Helper()
	for i, ns := range c.Nodes {
		if ns == nil {
			c.start(i)
		}
	}
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

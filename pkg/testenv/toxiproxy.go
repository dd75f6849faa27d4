package testenv

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Network is a toxiproxy TCP proxy on 127.0.0.1, run in the test's own
// process as a library (its API server calls Fatal on errors, so it is not
// started): faults of the network between Sluice and a server, such as a
// peer resetting the connection, a path that drops every byte, or a
// connection cut after so many bytes.
type Network struct {
	// Endpoint is the proxy's URL (with upstream's scheme), to give Sluice
	// in place of upstream's.
	Endpoint string

	proxy *toxiproxy.Proxy
}

// Toxics of the network (toxiproxy's names and attributes).
const (
	// ResetPeer resets the connection (TCP RST) once data flows.
	ResetPeer = "reset_peer"
	// Blackhole drops every byte and keeps the connection open: a stalled
	// path that only a timeout ends (toxiproxy's "timeout" toxic with a
	// timeout of 0).
	Blackhole = "timeout"
	// LimitData closes the connection after so many bytes.
	LimitData = "limit_data"
)

// NewNetwork starts a toxiproxy proxy in front of upstream (a URL such as
// MinIO's endpoint), stopped when the test ends.
func NewNetwork(t testing.TB, upstream string) *Network {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		t.Fatalf("toxiproxy upstream %q: %v", upstream, err)
	}
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(server, strings.ReplaceAll(t.Name(), "/", "_"), "127.0.0.1:0", u.Host)
	if err := p.Start(); err != nil {
		t.Fatalf("start toxiproxy in front of %s: %v", upstream, err)
	}
	t.Cleanup(p.Stop)
	return &Network{Endpoint: u.Scheme + "://" + p.Listen, proxy: p}
}

// Add puts a toxic on every connection, open ones included, in stream
// ("upstream", towards the server, or "downstream", towards the client),
// with its attributes (e.g. {"bytes": 65536} for LimitData), and answers
// its name for Remove. Toxiproxy swaps a toxic into each open link only
// when the link's data moves, so Add waits while a connection in that
// direction is stalled (the server not reading a request it holds): call
// it from a goroutine of its own when one may be.
func (n *Network) Add(toxic, stream string, attributes string) (string, error) {
	if attributes == "" {
		attributes = "{}"
	}
	name := toxic + "_" + stream
	spec := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, toxic, stream, attributes)
	if _, err := n.proxy.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		return "", fmt.Errorf("add toxic %s: %w", spec, err)
	}
	return name, nil
}

// Remove takes a toxic off; removing one that is gone does nothing. Like
// Add, it waits for stalled links.
func (n *Network) Remove(name string) {
	_ = n.proxy.Toxics.RemoveToxic(context.Background(), name)
}

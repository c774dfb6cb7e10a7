package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/dashboards"
	"github.com/kubedos/kubedos/internal/promtext"
)

// dashboardsServer is the controller that serves the cluster's dashboards
// (internal/dashboards: pages rendered from Prometheus's API) on
// api.DashboardsPort over TLS with the node's certificate, to any cluster
// certificate of role reader or above. It runs on the grafana and the
// prometheus roles; the hub says which of them serves (the grafana node,
// or the prometheus node when the spec has none) and where Prometheus
// listens on wg-observability.
type dashboardsServer struct {
	node  *NodeAPI
	addr  string
	dial  func() (observabilityHub, func(), error)
	clock Clock
	every time.Duration
	idle  time.Duration
	logf  func(string, ...any)

	reported
}

func newDashboardsServer(cfg EnrollConfig, node *NodeAPI, clock Clock, logf func(string, ...any)) *dashboardsServer {
	return &dashboardsServer{node: node, addr: ":" + strconv.Itoa(api.DashboardsPort), clock: clock, every: obsEvery, idle: kubeIdle, logf: logf,
		dial: observabilityDialer(cfg), reported: reported{name: "dashboards", logf: logf}}
}

func (*dashboardsServer) Name() string { return "dashboards" }

// Run asks the hub until this node is to serve, then serves until ctx
// ends. A hub that cannot be reached, or a listener that cannot be opened,
// is the supervisor's to retry.
func (d *dashboardsServer) Run(ctx context.Context) error {
	for {
		res, err := d.ask(ctx)
		if err != nil {
			d.setState("failed: " + err.Error())
			return err
		}
		if res.Enabled && res.Dashboards {
			return d.serve(ctx, res)
		}
		what := "the cluster's spec runs no Prometheus"
		if res.Enabled {
			what = "the grafana node serves the dashboards"
		}
		d.setState(what + "; asking again in " + d.idle.String())
		if !sleep(ctx, d.clock, d.idle) {
			return nil
		}
	}
}

func (d *dashboardsServer) ask(ctx context.Context) (*api.ObservabilityResponse, error) {
	hub, closeHub, err := d.dial()
	if err != nil {
		return nil, fmt.Errorf("dashboards: %w", err)
	}
	defer closeHub()
	res, err := hub.Config(ctx, &api.ObservabilityRequest{})
	if err != nil {
		return nil, fmt.Errorf("dashboards: where Prometheus is: %w", err)
	}
	return res, nil
}

func (d *dashboardsServer) serve(ctx context.Context, res *api.ObservabilityResponse) error {
	prom, err := dashboards.NewClient("http://"+res.Listen, &http.Client{Timeout: dashboards.DefaultTimeout})
	if err != nil {
		return fmt.Errorf("dashboards: Prometheus at %q: %w", clipString(res.Listen), err)
	}
	lis, err := net.Listen("tcp", d.addr)
	if err != nil {
		return fmt.Errorf("dashboards: %w", err)
	}
	d.setState(fmt.Sprintf("serving https://%s/ from Prometheus at %s", lis.Addr(), res.Listen))
	h := dashboards.New(prom, dashboards.Options{Cluster: clipString(res.Cluster)})
	return d.node.ServeDashboards(ctx, lis, h)
}

// ServeDashboards serves h on lis over TLS with the node's certificate to
// readers (and above) until ctx ends.
func (n *NodeAPI) ServeDashboards(ctx context.Context, lis net.Listener, h http.Handler) error {
	conf := &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: n.certs.get,
		ClientCAs: pool(n.cfg.CA), ClientAuth: tls.RequireAndVerifyClientCert}
	return promtext.ServeHandlerTLS(ctx, lis, conf, n.readers("Dashboards", h), log.New(logfWriter(n.cfg.Logf), "dashboards: ", 0))
}

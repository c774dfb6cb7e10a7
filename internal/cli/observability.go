package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/observability"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/spf13/cobra"
)

func newObservabilityCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "observability", Short: "Prometheus configuration, scrape targets and alert rules of a cluster"}
	cmd.AddCommand(newObservabilityConfigCmd(g))
	return cmd
}

// observabilityReport is config's --output json.
type observabilityReport struct {
	Dir     string   `json:"dir"`
	Files   []string `json:"files"`
	Scraped []string `json:"scraped"`
	// From says where the scraped set came from: spec, nodes or the hub.
	From string `json:"from"`
}

func newObservabilityConfigCmd(g *globals) *cobra.Command {
	var out, nodeDir, dataDir string
	var nodes []string
	var fromHub bool
	var c hubClient
	cmd := &cobra.Command{
		Use:   "config SPEC --out DIR",
		Short: "Write the Prometheus configuration, file-SD targets and alert rules of a cluster",
		Long: fmt.Sprintf(`Write what the prometheus node runs (docs/observability.md) into DIR, laid
out as it is on the node under --node-dir:

  prometheus.yml                     scrape jobs and alerting; do not edit
  rules/kubedos.rules.yml            the alert rules (each tested with promtool)
  targets/kubedosd-<node>.json       file-SD: the node's wg-observability
                                     address when it is scraped, else empty
  targets/hub.json                   the hub on the master
  targets/node-exporter.json         nodes whose image has node exporter
  prometheus.service.d/kubedos.conf  systemd drop-in for Debian's prometheus:
                                     this configuration, the database on the
                                     data partition, the spec's retention
                                     (workloads.observability.retention)

Every target is scraped over wg-observability only. kubedosd's /metrics
(port %d) and the hub's (port %d) need TLS with a client certificate from
the cluster CA of role reader or above: put the CA and a reader certificate
in DIR/tls/ca.crt, reader.crt and reader.key (kubedos keys issue prometheus
--role reader). Each node's job checks the node's own name in its
certificate; the hub's checks %s.

Which nodes are scraped: by default every node of the spec; --nodes names
them; --from-hub asks the hub's registry and scrapes the enrolled ones, so a
revoked or fenced node is dropped. Prometheus rereads the targets files by
itself; the other files change only with the spec.

Files are written durably (temporary file, fsync, rename); files under DIR
that this command does not make, such as tls/, are left alone.`, observability.NodeMetricsPort, observability.HubMetricsPort, api.HubServerName),
		Example: `  kubedos observability config cluster.yaml --out obs
  kubedos observability config cluster.yaml --out obs --from-hub --keys keys
  kubedos observability config cluster.yaml --out obs --nodes master,w-1 -o json
  # check it here: paths inside prometheus.yml must point at DIR
  kubedos observability config cluster.yaml --out obs --node-dir "$PWD/obs" && promtool check config obs/prometheus.yml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			if out == "" {
				return fmt.Errorf("--out DIR is required")
			}
			if fromHub && len(nodes) > 0 {
				return fmt.Errorf("--from-hub and --nodes both choose the scraped nodes: give one")
			}
			s, err := spec.Load(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			rep := observabilityReport{Dir: out, From: "spec"}
			scraped := make([]string, 0, len(s.Topology.Nodes))
			switch {
			case fromHub:
				rep.From = "hub"
				if c.addr == "" {
					c.spec = args[0]
				}
				cl, done, err := c.admin()
				if err != nil {
					return err
				}
				res, err := cl.ListNodes(cmd.Context())
				done()
				if err != nil {
					return c.explain(err)
				}
				scraped = enrolledNodes(res.Nodes)
			case len(nodes) > 0:
				rep.From = "nodes"
				scraped = append(scraped, nodes...)
			default:
				for _, n := range s.Topology.Nodes {
					scraped = append(scraped, n.Name)
				}
			}
			slices.Sort(scraped)
			files, err := observability.Generate(s, scraped, observability.Options{Dir: nodeDir, DataDir: dataDir})
			if err != nil {
				return err
			}
			for _, name := range files.Names() {
				p := filepath.Join(out, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return err
				}
				if err := durable.WriteFile(p, files[name], 0o644); err != nil {
					return err
				}
			}
			rep.Files, rep.Scraped = files.Names(), scraped
			if g.output == OutputJSON {
				return g.writeJSON(rep)
			}
			fmt.Fprintf(g.stdout, "wrote %d files to %s for cluster %s; scraping %d of %d nodes (from the %s)\n",
				len(files), out, s.Metadata.Name, len(scraped), len(s.Topology.Nodes), map[string]string{"spec": "spec", "nodes": "--nodes", "hub": "hub's enrolled nodes"}[rep.From])
			for _, name := range rep.Files {
				fmt.Fprintf(g.stdout, "  %s\n", name)
			}
			if _, err := os.Stat(filepath.Join(out, observability.FileReaderCert)); err != nil {
				fmt.Fprintf(g.stdout, "next: put the cluster CA and a reader certificate in %s (kubedos keys issue prometheus --role reader)\n", filepath.Join(out, "tls"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write into (required)")
	cmd.Flags().StringVar(&nodeDir, "node-dir", observability.DefaultDir, "where DIR's files live on the prometheus node (paths inside prometheus.yml)")
	cmd.Flags().StringVar(&dataDir, "data-dir", observability.DefaultDataDir, "Prometheus's database on the prometheus node (the data partition)")
	cmd.Flags().StringSliceVar(&nodes, "nodes", nil, "scrape only these nodes (default: every node of the spec)")
	cmd.Flags().BoolVar(&fromHub, "from-hub", false, "scrape the nodes the hub holds as enrolled (default hub: the one of SPEC's cluster)")
	c.addFlags(cmd)
	cmd.Flags().StringVar(&c.state, "state", "", "cluster state directory, to find the hub with --from-hub (default .kubedos/clusters/<cluster>)")
	return cmd
}

// enrolledNodes are the nodes to scrape from the hub's registry: enrolled
// ones only, so a revoked, fenced, quarantined or replaced node is dropped.
func enrolledNodes(nodes []api.Node) []string {
	out := []string{}
	for _, n := range nodes {
		if n.State == api.NodeEnrolled {
			out = append(out, n.Name)
		}
	}
	return out
}

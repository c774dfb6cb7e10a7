package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/plan"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/spf13/cobra"
)

// convergeFlags are the flags of kubedos converge.
// reachFlags say how to reach a cluster's hub and nodes: the operator's
// identity, the hub (--hub, $KUBEDOS_HUB, else the cluster's state) and
// node API addresses other than the spec's.
type reachFlags struct {
	hub   hubClient
	state string
	nodes map[string]string
}

func (r *reachFlags) add(cmd *cobra.Command) {
	r.hub.addFlags(cmd)
	_ = cmd.Flags().Set("hub", os.Getenv("KUBEDOS_HUB")) // empty: found from the cluster's state
	cmd.Flags().Lookup("hub").DefValue = "$KUBEDOS_HUB, else the cluster's state"
	cmd.Flags().StringVar(&r.state, "state", "", "cluster state directory (default .kubedos/clusters/<cluster>)")
	cmd.Flags().StringToStringVar(&r.nodes, "node-addr", nil, fmt.Sprintf("NAME=HOST:PORT: reach node NAME's API there (default: its spec address, port %d)", api.NodeAPIPort))
}

// resolve checks every --node-addr names a node of s, and returns the
// hub's address and the operator's TLS configuration.
func (r *reachFlags) resolve(s *spec.ClusterSpec) (string, *tls.Config, error) {
	for name := range r.nodes {
		if _, ok := s.NodeByName(name); !ok {
			return "", nil, fmt.Errorf("--node-addr %s: no node %s in the spec", name, name)
		}
	}
	addr := r.hub.addr
	if addr == "" {
		var err error
		if addr, err = cluster.HubFromState((&clusterFlags{state: r.state}).dir(s)); err != nil {
			return "", nil, err
		}
	}
	tc, err := cluster.Access{Keys: r.hub.keys, Cert: r.hub.cert, Key: r.hub.key}.TLS("")
	if err != nil {
		return "", nil, err
	}
	return addr, tc, nil
}

type convergeFlags struct {
	reachFlags
	build    string
	check    bool
	timeout  time.Duration
	stepTime time.Duration
	retries  int
}

func newConvergeCmd(g *globals) *cobra.Command {
	var f convergeFlags
	cmd := &cobra.Command{
		Use:   "converge SPEC",
		Short: "Check every convergence step of the cluster and apply what drifted",
		Long: `Run the cluster's convergence steps once, in the plan's order:

  attestation gate   every spec node enrolled at the hub, for its role, on
                     the build given with --build (check only: a node
                     pending or quarantined fails its gate, with the reason)
  backplanes         every node reports each WireGuard plane joined and up
                     (check only)
  convergence        each role named in the spec's nodeConfig: its node
                     configuration on every node of the role (a dry run
                     shows the diff; drift is applied through the node API)

A step whose dependency failed is skipped; the others go on. Each step is
retried with backoff and bounded in time. The run (each step's outcome,
diff and duration) is recorded at the hub, which keeps the last 16;
kubedos plan SPEC shows it. Running it again with nothing changed reports
every step unchanged. --check applies nothing (exit 2 when drifted).
Exit 1 when a step failed.

The hub is --hub, else $KUBEDOS_HUB, else the one the cluster's state
directory names (cluster up writes it).`,
		Example: "  kubedos converge cluster.yaml --keys keys --build out/local/<build-id>\n  kubedos converge cluster.yaml --check -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			s, err := spec.Load(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			cfg, err := f.config(s)
			if err != nil {
				return err
			}
			progress := g.stdout
			if g.output == OutputJSON {
				progress = g.stderr
			}
			cfg.Events = func(e converge.Event) { printConvergeEvent(progress, e) }
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			res, err := cluster.Converge(ctx, cfg)
			if res == nil {
				return err
			}
			if g.output == OutputJSON {
				rec := cluster.RunRecord(s.Metadata.Name, res.Record)
				rec.Seq = res.Seq
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(rec); jerr != nil {
					return jerr
				}
			} else if res.Seq > 0 {
				fmt.Fprintf(g.stdout, "recorded at the hub as run %d\n", res.Seq)
			}
			if res.RecordErr != nil {
				fmt.Fprintf(g.stderr, "kubedos: %v\n", res.RecordErr)
			}
			switch {
			case errors.Is(err, converge.ErrStepsFailed):
				return exitError{1}
			case err != nil:
				return err
			case res.Record.Counts.Drifted > 0:
				return exitError{2}
			case res.RecordErr != nil:
				return exitError{1}
			}
			return nil
		},
	}
	f.reachFlags.add(cmd)
	cmd.Flags().StringVar(&f.build, "build", "", "build every node must run: its directory or build-id (default: not checked)")
	cmd.Flags().BoolVar(&f.check, "check", false, "check only: report drift, apply nothing")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Minute, "give up on the whole run after this long")
	cmd.Flags().DurationVar(&f.stepTime, "step-timeout", 30*time.Second, "bound on one attempt of one step")
	cmd.Flags().IntVar(&f.retries, "retries", 2, "retries of a failed step (with backoff from 1 s)")
	return cmd
}

// config turns the flags into the library's configuration.
func (f *convergeFlags) config(s *spec.ClusterSpec) (cluster.ConvergeConfig, error) {
	cfg := cluster.ConvergeConfig{Spec: s, CheckOnly: f.check, NodeAddrs: f.nodes}
	cfg.Engine.Timeout, cfg.Engine.Retries = f.stepTime, f.retries
	if f.retries == 0 {
		cfg.Engine.Retries = -1 // the engine's 0 means its default
	}
	var err error
	if cfg.HubAddr, cfg.ClientTLS, err = f.resolve(s); err != nil {
		return cfg, err
	}
	if f.build != "" {
		dir, err := resolveBuild(f.build, "out")
		if err != nil {
			return cfg, err
		}
		m, _, err := manifest.Read(filepath.Join(dir, manifest.ManifestFile))
		if err != nil {
			return cfg, fmt.Errorf("--build %s: %w", f.build, err)
		}
		cfg.Builds = cluster.RoleBuilds(m)
	}
	return cfg, nil
}

// printConvergeEvent prints one line per finished step (with the diff of
// a drifted one, indented), retries, and the run's totals.
func printConvergeEvent(w io.Writer, e converge.Event) {
	switch e.Kind {
	case converge.StepRetry:
		fmt.Fprintf(w, "  retry      %s (attempt %d failed: %s; again in %v)\n", e.Step, e.Attempt, oneLine(e.Err), e.Wait)
	case converge.StepFinished:
		r := e.Result
		fmt.Fprintf(w, "  %-10s %s", r.Outcome, r.ID)
		if r.Duration > 0 {
			fmt.Fprintf(w, " (%v)", r.Duration.Round(time.Millisecond))
		}
		fmt.Fprintln(w)
		if r.Diff != "" && r.Outcome != converge.OutcomeFailed {
			fmt.Fprintln(w, indent(r.Diff, "      "))
		}
		if r.Error != "" && r.Outcome != converge.OutcomeSkipped {
			fmt.Fprintln(w, indent(r.Error, "      "))
		}
	case converge.RunFinished:
		c := e.Counts
		fmt.Fprintf(w, "%d changed, %d unchanged, %d drifted, %d failed, %d skipped\n", c.Changed, c.Unchanged, c.Drifted, c.Failed, c.Skipped)
	}
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pre)
}

// lastRunFlags let plan show the hub's last convergence run.
type lastRunFlags struct{ hub, keys, state string }

func (f *lastRunFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.hub, "hub", os.Getenv("KUBEDOS_HUB"), "hub to ask for the last convergence run (default $KUBEDOS_HUB, else the cluster's state)")
	cmd.Flags().StringVar(&f.keys, "keys", "keys", "key directory: the cluster CA and the admin certificate")
	cmd.Flags().StringVar(&f.state, "state", "", "cluster state directory (default .kubedos/clusters/<cluster>)")
}

// mark sets each step's last outcome when a hub can be found and answers
// within a few seconds; otherwise the plan is shown alone (a note on
// stderr says why when a hub was named or found but did not answer).
func (f *lastRunFlags) mark(ctx context.Context, g *globals, s *spec.ClusterSpec, doc *plan.Document) {
	addr := f.hub
	if addr == "" {
		var err error
		if addr, err = cluster.HubFromState((&clusterFlags{state: f.state}).dir(s)); err != nil {
			return // no cluster here: a plan of a spec only
		}
	}
	tc, err := cluster.Access{Keys: f.keys}.TLS("")
	if err != nil {
		fmt.Fprintf(g.stderr, "kubedos: last convergence run not shown: %v\n", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	run, err := cluster.LastRun(ctx, addr, tc)
	if err != nil {
		fmt.Fprintf(g.stderr, "kubedos: last convergence run not shown: %v\n", err)
		return
	}
	cluster.MarkLastRun(doc, run)
}

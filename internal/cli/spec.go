package cli

import (
	"fmt"
	"os"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/buildinfo"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/spf13/cobra"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and source revision of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			info := buildinfo.Get()
			if g.output == OutputJSON {
				return g.writeJSON(info)
			}
			rev := info.Revision
			if rev == "" {
				rev = "unknown"
			} else if info.Modified {
				rev += "+modified"
			}
			_, err := fmt.Fprintf(g.stdout, "kubedos %s (revision %s, %s, %s)\n", info.Version, rev, info.GoVersion, info.Platform)
			return err
		},
	}
}

func newSpecCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "spec",
		Short: "Write and check ClusterSpec files",
	}
	cmd.AddCommand(newSpecValidateCmd(g), newSpecInitCmd(g))
	return cmd
}

type validateReport struct {
	File     string        `json:"file"`
	Valid    bool          `json:"valid"`
	Cluster  string        `json:"cluster,omitempty"`
	Nodes    int           `json:"nodes,omitempty"`
	Problems spec.Problems `json:"problems"`
	// Warnings do not make the spec invalid (placement across failure
	// domains the topology cannot give).
	Warnings []string `json:"warnings,omitempty"`
}

func newSpecValidateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a ClusterSpec and report every problem at once",
		Long: `Decode FILE strictly (unknown fields are errors), apply defaults and check
every rule of what decoded, reporting both kinds of problem in one run: unique names, VMIDs and addresses; addresses inside their CIDR;
planes disjoint from each other and the LAN; exactly one master; odd etcd and
control-plane counts; placement across failure domains (with several, no
domain may hold half the etcd members, or every control-plane node or load
balancer; with one, a warning); a VIP only with load balancers; Ceph and ZFS
rules; package names; resource bounds.

Each problem is printed as FILE:LINE:COLUMN: PATH: MESSAGE.
Exit status: 0 valid, 1 invalid or unreadable.`,
		Example: "  kubedos spec validate examples/reference.yaml\n  kubedos spec validate cluster.yaml -o json | jq .problems",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			file := args[0]
			// Structural and semantic problems in one run.
			s, ps, err := spec.CheckFile(file)
			if err != nil {
				return err
			}
			rep := validateReport{File: file, Valid: len(ps) == 0, Problems: spec.Problems{}}
			if rep.Valid {
				rep.Cluster, rep.Nodes = s.Metadata.Name, len(s.Topology.Nodes)
				rep.Warnings = spec.PlacementWarnings(s)
			} else {
				rep.Problems = ps
			}
			if g.output == OutputJSON {
				if err := g.writeJSON(rep); err != nil {
					return err
				}
			} else if rep.Valid {
				for _, w := range rep.Warnings {
					fmt.Fprintf(g.stderr, "%s: warning: %s\n", file, w)
				}
				nodes := "nodes"
				if rep.Nodes == 1 {
					nodes = "node"
				}
				fmt.Fprintf(g.stdout, "%s: valid: cluster %q, %d %s\n", file, rep.Cluster, rep.Nodes, nodes)
			} else {
				for _, p := range rep.Problems {
					fmt.Fprintf(g.stderr, "%s:%s\n", file, p)
				}
				fmt.Fprintf(g.stderr, "%s: %d problem(s)\n", file, len(rep.Problems))
			}
			if !rep.Valid {
				return exitError{1}
			}
			return nil
		},
	}
}

func newSpecInitCmd(g *globals) *cobra.Command {
	var topology, file string
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a commented example ClusterSpec",
		Long: `Write a commented example ClusterSpec to --file (default kubedos.yaml), or to
standard output with --file -.

Topologies:
  local      a master and two workers, small enough to boot on one machine
  reference  the 16-node reference platform: master, prometheus, grafana,
             storage, 3 etcd, 3 control plane, 3 workers, 3 load balancers, VIP

An existing file is never overwritten unless --force is given.`,
		Example: "  kubedos spec init --topology local --file cluster.yaml\n  kubedos spec init --topology reference --file - | less",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var data []byte
			switch topology {
			case "local":
				data = examples.Local
			case "reference":
				data = examples.Reference
			default:
				return fmt.Errorf("--topology must be local or reference, got %q", topology)
			}
			if file == "-" {
				_, err := g.stdout.Write(data)
				return err
			}
			if err := writeNew(file, data, 0o644, force); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "wrote %s (%s topology); next: kubedos spec validate %s\n", file, topology, file)
			return nil
		},
	}
	cmd.Flags().StringVar(&topology, "topology", "local", "example to write: local or reference")
	cmd.Flags().StringVarP(&file, "file", "f", "kubedos.yaml", "where to write; - for standard output")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	return cmd
}

// writeNew writes data durably, so a reader never sees half a file; it
// refuses to replace an existing file unless force.
func writeNew(path string, data []byte, mode os.FileMode, force bool) error {
	if _, err := os.Stat(path); err == nil && !force {
		return fmt.Errorf("%s already exists (use --force to overwrite)", path)
	}
	return durable.WriteFile(path, data, mode)
}

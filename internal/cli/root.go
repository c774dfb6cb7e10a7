// Package cli assembles the kubedos command line: a thin layer of flags and
// output formats over the library packages.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
)

// Output formats shared by every command that reads.
const (
	OutputText = "text"
	OutputJSON = "json"
	OutputDot  = "dot"
)

// exitError carries a process exit code for a failure that was already
// reported to the user (so main prints nothing more).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

type globals struct {
	output string
	stdout io.Writer
	stderr io.Writer
}

// Run executes the CLI with args and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "kubedos: %v%s\n", err, remoteCode(err))
		return 1
	}
}

// remoteCode names the status code of an error a server answered with
// (errdefs.FromGRPC keeps it under the message), so the operator sees the
// refusal was the server's and of which kind: " (PermissionDenied)".
func remoteCode(err error) string {
	if s, ok := status.FromError(err); ok {
		return " (" + s.Code().String() + ")"
	}
	return ""
}

// NewRoot builds the command tree.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "kubedos",
		Short: "Manufacture a whole cluster from one declarative file, and prove every node authentic",
		Long: `kubedos manufactures a cluster from one ClusterSpec: signed, reproducible Debian
images, UEFI Secure Boot and TPM measured boot, attestation-gated enrollment,
WireGuard backplanes and atomic A/B upgrades, managed through an API only.

Start with:
  kubedos spec init --topology local --file cluster.yaml
  kubedos spec validate cluster.yaml
  kubedos plan cluster.yaml

Manufacture and run it (build, boot and cluster need root):
  kubedos keys init --dir keys --cluster local
  kubedos lock cluster.yaml && kubedos fetch cluster.yaml
  kubedos build cluster.yaml --out out            # prints out/<cluster>/<build-id>
  kubedos verify out/local/<build-id>
  kubedos cluster up cluster.yaml --build out/local/<build-id>
  kubedos node list --hub <addr>; kubedos audit --hub <addr>
  kubedos cluster down cluster.yaml

Every command that reads accepts --output json for scripts.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVarP(&g.output, "output", "o", OutputText, "output format: text or json (plan also takes dot)")
	root.AddCommand(newVersionCmd(g), newSpecCmd(g), newPlanCmd(g), newConvergeCmd(g), newKeysCmd(g), newLockCmd(g), newFetchCmd(g), newBuildCmd(g), newVerifyCmd(g), newBootCmd(g), newHubCmd(g), newNodeCmd(g), newAuditCmd(g), newClusterCmd(g), newDeployCmd(g), newBundleCmd(g), newObservabilityCmd(g), newConsoleCmd(g), newKubeconfigCmd(g))
	return root
}

// checkOutput rejects an output format a command does not support.
func (g *globals) checkOutput(allowed ...string) error {
	for _, a := range allowed {
		if g.output == a {
			return nil
		}
	}
	return fmt.Errorf("--output %q is not supported here (choose from %v)", g.output, allowed)
}

func (g *globals) writeJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

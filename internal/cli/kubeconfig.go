package cli

import (
	"fmt"
	"time"

	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/spf13/cobra"
)

// newKubeconfigCmd is `kubedos kubeconfig SPEC --out FILE`: flags →
// cluster.Access.WriteAdminKubeconfig → rendering.
func newKubeconfigCmd(g *globals) *cobra.Command {
	var c hubClient
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "kubeconfig SPEC --out FILE",
		Short: "Write an admin kubeconfig for the cluster's Kubernetes, from an admin operator identity (audited)",
		Long: `Write to FILE a kubeconfig that reaches the Kubernetes API server of the
cluster SPEC describes as a cluster administrator (group system:masters).

A P-256 key is made here, in memory; the hub, called with your operator
certificate (--keys, --cert, --key: by default the key ceremony's admin
certificate), certifies it with the cluster's Kubernetes CA for user
kubedos-admin:<your operator name>, and records the issuance (serial and
expiry) in its audit log as kubernetes.admin. Only an operator certificate of
role admin is answered: operator and reader certificates, and nodes, are
refused and the refusal audited. Nothing but the key's CSR leaves this
machine, and the key is written only into FILE.

The certificate lives at most an hour, and never longer than the spec's
workloads.kubernetes.certificateLifetime: Kubernetes checks no revocation, so
its life is the bound on a lost kubeconfig. Run this again for a new one.

FILE embeds the CA, the certificate and the key (…-data fields), is written
0600 through a temporary file, and names the API server as an operator's
machine reaches it: https://<topology.apiVIP>:6443 when the spec has a VIP
(held by its load balancers, or by its control planes when it has none), else
https://<first controlplane node's address>:6443. An existing
FILE is not replaced unless --force.

The hub is found as for kubedos node list: --hub, KUBEDOS_HUB, else the hub
of SPEC's cluster (the master keeping it after cluster up).

With --output json, prints {path, server, user, notAfter}; never the key.`,
		Example: "  kubedos kubeconfig examples/local-k8s.yaml --out local-k8s.kubeconfig --keys keys\n" +
			"  KUBECONFIG=local-k8s.kubeconfig kubectl get nodes",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			s, err := spec.Load(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if !s.Workloads.Kubernetes.Enabled {
				return fmt.Errorf("%s: workloads.kubernetes is not enabled: cluster %s runs no Kubernetes", args[0], s.Metadata.Name)
			}
			c.spec = args[0]
			if err := c.resolve(); err != nil {
				return err
			}
			a := cluster.Access{Keys: c.keys, Cert: c.cert, Key: c.key}
			w, err := a.WriteAdminKubeconfig(cmd.Context(), c.addr, s.Metadata.Name, out, force)
			if err != nil {
				return c.explain(err)
			}
			if g.output == OutputJSON {
				return g.writeJSON(w)
			}
			_, err = fmt.Fprintf(g.stdout, "wrote %s: user %s on %s, valid until %s\n", w.Path, w.User, w.Server, w.NotAfter.UTC().Format(time.RFC3339))
			return err
		},
	}
	c.addFlags(cmd)
	cmd.Flags().Lookup("hub").Usage = "hub address (env KUBEDOS_HUB; default: the hub of SPEC's cluster)"
	cmd.Flags().StringVar(&c.state, "state", "", "cluster state directory, to find the hub (default .kubedos/clusters/<cluster>)")
	cmd.Flags().StringVar(&out, "out", "", "the kubeconfig to write (required; 0600)")
	cmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

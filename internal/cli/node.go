package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target/qemu"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// hubClient holds the flags of commands that call the hub's admin service.
type hubClient struct {
	addr, keys, cert, key string
}

func (c *hubClient) addFlags(cmd *cobra.Command) {
	def := os.Getenv("KUBEDOS_HUB")
	if def == "" {
		def = "127.0.0.1:7443"
	}
	cmd.Flags().StringVar(&c.addr, "hub", def, "hub address (env KUBEDOS_HUB)")
	cmd.Flags().StringVar(&c.keys, "keys", "keys", "key directory: the cluster CA and, by default, the admin certificate")
	cmd.Flags().StringVar(&c.cert, "cert", "", "client certificate (default: <keys>/ca/admin.crt)")
	cmd.Flags().StringVar(&c.key, "key", "", "client key (default: <keys>/ca/admin.key)")
}

// admin connects with the operator's client certificate, checking the hub's
// certificate against the cluster CA.
func (c *hubClient) admin() (*api.AdminClient, func(), error) {
	cc, err := operatorConn(c.keys, c.cert, c.key, c.addr, hub.ServerName)
	if err != nil {
		return nil, nil, err
	}
	return api.NewAdminClient(cc), func() { cc.Close() }, nil
}

// runAdmin is the body of every command that calls the hub's admin
// service: check the output format, connect with the operator's
// certificate, run fn, close.
func (c *hubClient) runAdmin(g *globals, fn func(cmd *cobra.Command, args []string, cl *api.AdminClient) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := g.checkOutput(OutputText, OutputJSON); err != nil {
			return err
		}
		cl, done, err := c.admin()
		if err != nil {
			return err
		}
		defer done()
		return fn(cmd, args, cl)
	}
}

// operatorConn dials addr with an operator's client certificate (default:
// the admin one in the key directory) over TLS 1.3, checking the server's
// certificate chains to the cluster CA and names serverName.
func operatorConn(keys, cert, key, addr, serverName string) (*grpc.ClientConn, error) {
	conf, err := operatorTLS(keys, cert, key, serverName)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(addr, append(api.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(conf)))...)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", serverName, addr, err)
	}
	return cc, nil
}

// operatorTLS is the client side of mTLS with the operator's certificate
// (default: the admin one in keys), trusting the cluster CA for serverName.
func operatorTLS(keys, cert, key, serverName string) (*tls.Config, error) {
	if cert == "" {
		cert = filepath.Join(keys, sign.FileAdminCert)
	}
	if key == "" {
		key = filepath.Join(keys, sign.FileAdminKey)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	ca, err := sign.ReadCertificate(filepath.Join(keys, sign.FileCACert))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	conf := &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS13}
	if serverName == hub.ServerName {
		// A node's certificate may carry any node's name; the hub's alone
		// carries the hub's policy.
		conf.VerifyConnection = pki.VerifyHub
	}
	return conf, nil
}

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Inspect and act on nodes, through the hub and their own API"}
	var c hubClient
	list := &cobra.Command{
		Use:   "list",
		Short: "List every node the hub knows, with its state and, if refused, why",
		Args:  cobra.NoArgs,
		RunE: c.runAdmin(g, func(cmd *cobra.Command, _ []string, cl *api.AdminClient) error {
			res, err := cl.ListNodes(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				return g.writeJSON(res)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tSTATE\tBUILD\tCERT UNTIL\tREASON")
			for _, n := range res.Nodes {
				until := ""
				if !n.CertNotAfter.IsZero() {
					until = n.CertNotAfter.UTC().Format(time.RFC3339)
				}
				reason := reasonText(n.Reason, 60)
				if n.Retired != "" && reason == "" {
					reason = reasonText(&api.Refusal{Check: "build-retired", Detail: n.Retired}, 60)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, nodeStateText(n), n.BuildID, until, reason)
			}
			return tw.Flush()
		}),
	}
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show one node: identity, build, certificate and the full quarantine reason",
		Args:  cobra.ExactArgs(1),
		RunE: c.runAdmin(g, func(cmd *cobra.Command, args []string, cl *api.AdminClient) error {
			n, err := cl.GetNode(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printNode(g, n)
		}),
	}
	for _, sub := range []*cobra.Command{list, get} {
		c.addFlags(sub)
	}
	cmd.AddCommand(list, get, nodeAction(g, "revoke", "Revoke a node's certificates at once; the hub and nodes refuse them from now on"),
		nodeAction(g, "fence", "Fence a node (runbook step 1): revoke it and mark it to be stopped"),
		nodeAction(g, "replace", "Retire a node's identity so a fresh machine can enroll under its name through the same gate"))
	cmd.AddCommand(nodeAPICommands(g)...)
	return cmd
}

func nodeAction(g *globals, verb, short string) *cobra.Command {
	var c hubClient
	var reason, specPath, state string
	cmd := &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: c.runAdmin(g, func(cmd *cobra.Command, args []string, cl *api.AdminClient) error {
			var n *api.Node
			var err error
			switch verb {
			case "revoke":
				n, err = cl.Revoke(cmd.Context(), args[0], reason)
			case "fence":
				n, err = cl.Fence(cmd.Context(), args[0], reason)
			default:
				n, err = cl.Replace(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			if verb == "fence" && specPath != "" {
				if err := stopLocalNode(specPath, state, args[0]); err != nil {
					return fmt.Errorf("fenced at the hub, but stopping the VM failed: %w", err)
				}
				fmt.Fprintf(g.stderr, "%s: VM stopped\n", args[0])
			}
			return printNode(g, n)
		}),
	}
	c.addFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the node record and the audit log")
	if verb == "fence" {
		cmd.Long = short + `.

Fencing revokes every certificate of the node at the hub at once (the hub and
every node API refuse it from then on) and marks it fenced until it is
replaced. With --spec, the node's VM on the local QEMU target is stopped too
(runbook: fence, revoke, destroy, replace).`
		cmd.Flags().StringVar(&specPath, "spec", "", "the cluster's spec: also stop the node's VM on the local qemu target")
		cmd.Flags().StringVar(&state, "state", "", "cluster state directory (default .kubedos/clusters/<cluster>)")
	}
	return cmd
}

// stopLocalNode stops a node's VM in a local cluster's state directory.
func stopLocalNode(specPath, state, name string) error {
	s, err := spec.Load(specPath)
	if err != nil {
		return fmt.Errorf("%s: %w", specPath, err)
	}
	if _, ok := s.NodeByName(name); !ok {
		return fmt.Errorf("no node %q in %s", name, specPath)
	}
	f := clusterFlags{state: state}
	c := &localCluster{spec: s, dir: f.dir(s)}
	return qemu.Stop(c.nodeDir(name))
}

func printNode(g *globals, n *api.Node) error {
	if g.output == OutputJSON {
		return g.writeJSON(n)
	}
	fmt.Fprintf(g.stdout, "name:     %s\nrole:     %s\nstate:    %s\nEK:       %s\nbuild:    %s\n", n.Name, n.Role, n.State, n.EKHash, n.BuildID)
	if n.CertSerial != "" {
		fmt.Fprintf(g.stdout, "cert:     serial %s until %s\n", n.CertSerial, n.CertNotAfter.UTC().Format(time.RFC3339))
	}
	if n.Reason != nil {
		fmt.Fprintf(g.stdout, "reason:   %s\n", reasonText(n.Reason, 0))
	}
	if n.Retired != "" {
		fmt.Fprintf(g.stdout, "retired:  %s\n", n.Retired)
	}
	return nil
}

func reasonText(r *api.Refusal, max int) string {
	if r == nil {
		return ""
	}
	s := r.Check + ": " + strings.Join(strings.Fields(r.Detail), " ")
	if max > 0 && len(s) > max {
		s = s[:max-1] + "…"
	}
	return s
}

func newAuditCmd(g *globals) *cobra.Command {
	var c hubClient
	var from uint64
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read the hub's append-only, hash-chained audit log",
		Args:  cobra.NoArgs,
		RunE: c.runAdmin(g, func(cmd *cobra.Command, _ []string, cl *api.AdminClient) error {
			res, err := cl.Audit(cmd.Context(), from, limit)
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				return g.writeJSON(res)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tTARGET\tOUTCOME\tDETAIL")
			for _, e := range res.Entries {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Actor, e.Action, e.Target, e.Outcome, strings.Join(strings.Fields(e.Detail), " "))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if !res.ChainOK {
				fmt.Fprintln(g.stderr, "WARNING: the audit log's hash chain does not verify")
				return exitError{1}
			}
			return nil
		}),
	}
	c.addFlags(cmd)
	cmd.Flags().Uint64Var(&from, "from", 0, "first sequence number")
	cmd.Flags().IntVar(&limit, "limit", 1000, "entries at most")
	return cmd
}

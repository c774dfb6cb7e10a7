package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/spf13/cobra"
)

// defaultHub is where a hub is looked for without --hub, KUBEDOS_HUB or
// --spec: kubedos hub serve's default.
const defaultHub = "127.0.0.1:7443"

// hubClient holds the flags of commands that call the hub's admin service.
type hubClient struct {
	addr, keys, cert, key string
	// spec and state find the hub of a cluster made by cluster up, as
	// cluster status does (withSpec commands only).
	spec, state string
	// where says how addr was found, for the error when it does not answer.
	where string
}

func (c *hubClient) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.addr, "hub", "", fmt.Sprintf("hub address (env KUBEDOS_HUB; default: the hub of --spec's cluster, else %s)", defaultHub))
	cmd.Flags().StringVar(&c.keys, "keys", "keys", "key directory: the cluster CA and, by default, the admin certificate")
	cmd.Flags().StringVar(&c.cert, "cert", "", "client certificate (default: <keys>/ca/admin.crt)")
	cmd.Flags().StringVar(&c.key, "key", "", "client key (default: <keys>/ca/admin.key)")
}

// addSpecFlags lets the command find the hub from a local cluster's state.
func (c *hubClient) addSpecFlags(cmd *cobra.Command, usage string) {
	cmd.Flags().StringVar(&c.spec, "spec", "", usage)
	cmd.Flags().StringVar(&c.state, "state", "", "cluster state directory (default .kubedos/clusters/<cluster>)")
}

// resolve picks the hub: --hub, then KUBEDOS_HUB, then the hub of --spec's
// cluster (the master keeping it, or the one on this host), then the
// default.
func (c *hubClient) resolve() error {
	switch {
	case c.addr != "":
		c.where = "--hub"
		return nil
	case os.Getenv("KUBEDOS_HUB") != "":
		c.addr, c.where = os.Getenv("KUBEDOS_HUB"), "KUBEDOS_HUB"
		return nil
	case c.spec == "":
		c.addr, c.where = defaultHub, "the default address (no --hub, KUBEDOS_HUB or --spec)"
		return nil
	}
	f := clusterFlags{keys: c.keys, state: c.state}
	cfg, err := f.load(c.spec, false, nil)
	if err != nil {
		return err
	}
	addr, keeper, where, err := cluster.New(cfg).FindHub()
	if err != nil {
		return err
	}
	if addr == "" {
		return fmt.Errorf("no hub of cluster %s found: looked at %s (is the cluster up? kubedos cluster status %s)", cfg.Spec.Metadata.Name, where, c.spec)
	}
	c.addr, c.where = addr, where
	if keeper != "" {
		c.where = fmt.Sprintf("%s (kept by %s)", where, keeper)
	}
	return nil
}

// admin connects with the operator's client certificate, checking the hub's
// certificate against the cluster CA.
func (c *hubClient) admin() (*api.AdminClient, func(), error) {
	if err := c.resolve(); err != nil {
		return nil, nil, err
	}
	return cluster.Access{Keys: c.keys, Cert: c.cert, Key: c.key}.Hub(c.addr)
}

// explain adds where the hub was looked for to an error of a hub that did
// not answer.
func (c *hubClient) explain(err error) error {
	if err == nil || !errors.Is(errdefs.FromGRPC(err), errdefs.ErrUnavailable) {
		return err
	}
	hint := ""
	if c.spec == "" && c.where != "--hub" {
		hint = "; after cluster up the hub runs on the master: give --spec SPEC or --hub"
	}
	return fmt.Errorf("%w (hub %s, from %s%s)", err, c.addr, c.where, hint)
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
		return c.explain(fn(cmd, args, cl))
	}
}

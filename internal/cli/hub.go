package cli

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/hubhost"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/spf13/cobra"
)

func newHubCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "hub", Short: "Run the enrollment hub and manage its window"}
	cmd.AddCommand(newHubServeCmd(g), newHubWindowCmd(g))
	return cmd
}

func newHubServeCmd(g *globals) *cobra.Command {
	var keys, state, listen, metricsListen, buildDir, ekCA string
	var hosts []string
	cmd := &cobra.Command{
		Use:   "serve SPEC",
		Short: "Serve the hub: attestation-gated enrollment, node registry, revocation, audit",
		Long: `Serve the kubedos hub on an operator machine (kubedosd serves the same hub on
the master role). Nodes enroll over TLS with TPM evidence; the hub verifies
AK-EK binding, the EK policy, the quote and nonce, the event log, Secure Boot
and PCR 4/7/11 against the signed manifest of --build for the node's role.
Only then it signs the node's CSR; any failure quarantines the node with the
exact reason. Operators call the admin service with a client certificate
from the cluster CA (kubedos keys init makes an admin one).

State (nodes, sessions, revocations, the hash-chained audit log) is kept in
--state/hub.db (bbolt), every change in one transaction.

With --metrics-listen the hub also serves /metrics (Prometheus text format)
over TLS to cluster certificates of role reader and above: the registry by
node and state, enrollments and refusals by check, certificates issued,
plane joins, evidence verification latency, the audit chain's length and the
last convergence run (docs/observability.md).`,
		Example: "  kubedos hub serve cluster.yaml --build out/local/<build-id> --keys keys --listen 127.0.0.1:7443",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := spec.Load(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			ks, err := sign.LoadKeySet(keys)
			if err != nil {
				return err
			}
			m, err := cluster.VerifiedManifest(buildDir, ks)
			if err != nil {
				return err
			}
			if m.Cluster != s.Metadata.Name {
				return fmt.Errorf("build %s is of cluster %q, the spec is %q", buildDir, m.Cluster, s.Metadata.Name)
			}
			ca, err := pki.LoadCA(keys)
			if err != nil {
				return err
			}
			kube, err := kubeCAsIfPresent(keys)
			if err != nil {
				return err
			}
			var ekCAs *x509.CertPool
			if ekCA == "" {
				ekCA = s.Trust.EKPolicy.CAFile
			}
			if ekCA != "" {
				if ekCAs, err = loadPool(ekCA); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(state, 0o700); err != nil {
				return err
			}
			// Serving a hub that was handed to a master would make a second
			// gate for the same CA: a new, empty state here would enroll
			// anything it was told to.
			if h, err := cluster.ReadHandoff(state); err != nil || h != nil {
				if err != nil {
					return err
				}
				return fmt.Errorf("the hub in %s was handed to %s on %s (%s), which serves it now; remove %s only if that master and its state are gone for good",
					state, h.Node, h.Addr, h.At.Format(time.RFC3339), filepath.Join(state, cluster.HandoffFile))
			}
			h, err := hubhost.Open(cmd.Context(), hubhost.Config{Spec: s, Manifest: m, CA: ca, ArtifactKey: ks.SigningPub, EKCAs: ekCAs,
				StatePath: filepath.Join(state, "hub.db"), Hosts: hosts, Kube: kube})
			if err != nil {
				return err
			}
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				h.Close()
				return fmt.Errorf("hub: listen %s: %w", listen, err)
			}
			fmt.Fprintf(g.stderr, "hub for cluster %q (build %s) listening on %s; state %s\n", s.Metadata.Name, m.BuildID, lis.Addr(), state)
			var mlis net.Listener
			if metricsListen != "" {
				if mlis, err = net.Listen("tcp", metricsListen); err != nil {
					lis.Close()
					h.Close()
					return fmt.Errorf("hub: --metrics-listen %s: %w", metricsListen, err)
				}
				fmt.Fprintf(g.stderr, "hub metrics on https://%s/metrics\n", mlis.Addr())
			}
			return h.ServeWithMetrics(cmd.Context(), lis, mlis, func(format string, a ...any) {
				fmt.Fprintf(g.stderr, format+"\n", a...)
			})
		},
	}
	cmd.Flags().StringVar(&keys, "keys", "keys", "key directory (the cluster CA signs node certificates)")
	cmd.Flags().StringVar(&state, "state", ".kubedos-hub", "hub state directory")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:7443", "address to serve on")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "address to serve /metrics on (TLS, reader certificates; default: none)")
	cmd.Flags().StringVar(&buildDir, "build", "", "build directory whose signed manifest is the policy (required)")
	cmd.Flags().StringVar(&ekCA, "ek-ca", "", "PEM bundle of EK certificate CAs (default: the spec's trust.ekPolicy.caFile)")
	cmd.Flags().StringSliceVar(&hosts, "host", []string{"127.0.0.1"}, "extra names and addresses for the hub's TLS certificate")
	_ = cmd.MarkFlagRequired("build")
	return cmd
}

func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("EK CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	return pool, nil
}

func newHubWindowCmd(g *globals) *cobra.Command {
	var c hubClient
	var d time.Duration
	cmd := &cobra.Command{
		Use:   "window",
		Short: "Open the enrollment window (spec ekPolicy.mode window): any EK may enroll until it closes",
		Args:  cobra.NoArgs,
		RunE: c.runAdmin(g, func(cmd *cobra.Command, _ []string, cl *api.AdminClient) error {
			w, err := cl.OpenWindow(cmd.Context(), d)
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				return g.writeJSON(w)
			}
			fmt.Fprintf(g.stdout, "enrollment window open until %s\n", w.Until.Format(time.RFC3339))
			return nil
		}),
	}
	c.addFlags(cmd)
	cmd.Flags().DurationVar(&d, "for", 30*time.Minute, "how long the window stays open")
	return cmd
}

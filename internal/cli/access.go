package cli

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/spf13/cobra"
)

// issuedClient is what keys issue reports.
type issuedClient struct {
	Name     string    `json:"name"`
	Role     string    `json:"role"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"notAfter"`
	Cert     string    `json:"cert"`
	Key      string    `json:"key"`
}

func keysIssueCmd(g *globals) *cobra.Command {
	var dir, out, role string
	var lifetime time.Duration
	cmd := &cobra.Command{
		Use:   "issue NAME",
		Short: "Issue an operator client certificate (admin, operator or reader) from the cluster CA",
		Long: `Issue a client certificate for NAME with the cluster CA in --keys: a fresh P-256
key, CN NAME, the role in O (kubedos:admin|operator|reader), client auth only.
The hub and every node API accept it until it expires or is revoked
(kubedos keys revoke). Roles follow Talos: readers read, operators also
restart services, apply configuration and act on node identities, admins
also reboot, upgrade and revoke certificates.

Writes <out>/NAME.crt and <out>/NAME.key (0600, through a temporary file);
an existing file is never overwritten.`,
		Example: "  kubedos keys issue prometheus --role reader --out creds",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			name := args[0]
			if err := pki.CheckName("NAME", name); err != nil {
				return err
			}
			certFile, keyFile := filepath.Join(out, name+".crt"), filepath.Join(out, name+".key")
			for _, f := range []string{certFile, keyFile} {
				if _, err := os.Stat(f); err == nil {
					return fmt.Errorf("%s exists: not overwriting a credential", f)
				}
			}
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return err
			}
			is, err := ca.IssueClient(name, pki.Role(role), lifetime, time.Now())
			if err != nil {
				return fmt.Errorf("--role %s: %w", role, err)
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			if err := writeNew(keyFile, is.KeyPEM, 0o600, false); err != nil {
				return err
			}
			if err := writeNew(certFile, is.CertPEM, 0o644, false); err != nil {
				_ = os.Remove(keyFile)
				return err
			}
			rep := issuedClient{Name: name, Role: role, Serial: pki.SerialString(is.Cert.SerialNumber), NotAfter: is.Cert.NotAfter, Cert: certFile, Key: keyFile}
			if g.output == OutputJSON {
				return g.writeJSON(rep)
			}
			fmt.Fprintf(g.stdout, "issued %s (%s), serial %s, valid until %s\n  certificate %s\n  key         %s\n",
				name, role, rep.Serial, rep.NotAfter.UTC().Format(time.RFC3339), certFile, keyFile)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "keys", "keys", "key directory holding the cluster CA")
	// --dir was this command's name for what every other command calls --keys.
	cmd.Flags().StringVar(&dir, "dir", "keys", "key directory holding the cluster CA")
	_ = cmd.Flags().MarkDeprecated("dir", "use --keys")
	cmd.Flags().StringVar(&out, "out", ".", "directory for NAME.crt and NAME.key")
	cmd.Flags().StringVar(&role, "role", string(pki.RoleReader), "admin, operator or reader")
	cmd.Flags().DurationVar(&lifetime, "lifetime", 30*24*time.Hour, "how long the certificate is valid")
	return cmd
}

func keysRevokeCmd(g *globals) *cobra.Command {
	var c hubClient
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke CERT",
		Short: "Revoke an operator client certificate at the hub (admin)",
		Long: `Revoke the operator client certificate in the PEM file CERT. The hub refuses it
from its next call; every node refuses it once it fetches the revocation list
from the hub (every 30 seconds). Node certificates are
revoked with their node: kubedos node revoke NAME. Audited at the hub.`,
		Example: "  kubedos keys revoke creds/prometheus.crt --hub 10.20.0.1:7443 --keys keys --reason 'key lost'",
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = c.runAdmin(g, func(cmd *cobra.Command, args []string, cl *api.AdminClient) error {
		b, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		block, _ := pem.Decode(b)
		if block == nil || block.Type != "CERTIFICATE" {
			return fmt.Errorf("%s: not a PEM certificate", args[0])
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		if reason == "" {
			return errors.New("--reason is required: the audit log keeps it")
		}
		rc, err := cl.RevokeClient(cmd.Context(), block.Bytes, reason)
		if err != nil {
			return err
		}
		if g.output == OutputJSON {
			return g.writeJSON(rc)
		}
		fmt.Fprintf(g.stdout, "revoked %s, serial %s (%s)\n", rc.Client, rc.Serial, rc.Reason)
		return nil
	})
	c.addFlags(cmd)
	c.addSpecFlags(cmd, "find the hub of this spec's cluster (where cluster up left it) instead of --hub")
	cmd.Flags().StringVar(&reason, "reason", "", "why (kept in the audit log)")
	return cmd
}

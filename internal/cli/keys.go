package cli

import (
	"fmt"
	"time"

	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/tpmseal"
	"github.com/spf13/cobra"
)

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Make and inspect the platform's keys"}
	var dir, cluster string
	var addKube, addPCR bool
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Run the key ceremony: Secure Boot PK/KEK/db, artifact signing key, cluster CA",
		Long: `Make the platform's own keys under --dir:

  secureboot/  PK, KEK, db: RSA 2048 X.509 certificates, EFI signature lists
               (.esl) and signed authenticated variables (.auth) for enrollment
  artifact/    ed25519 key that signs build manifests and the darksite repo;
               RSA 2048 PCR policy key that signs each UKI's PCR 11 values,
               without which no node's TPM releases its state key
  ca/          the cluster CA and an admin client certificate for the hub
  kubernetes/  the Kubernetes CA, etcd CA, front-proxy CA and service-account
               key pair, which only the hub uses (docs/kubernetes.md)

Private keys are written 0600 in 0700 directories and never enter an artifact,
a bundle or a log. Existing keys are never overwritten: init fails, naming the
file, and writes nothing. A key directory made before the Kubernetes keys
existed gets them, and nothing else, with --add-kubernetes; one made before the
PCR policy key gets it with --add-pcr-policy (then rebuild: nodes of older
builds keep the PCR 7 policy they were sealed with, docs/security.md).`,
		Example: "  kubedos keys init --dir keys --cluster local",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			if addKube && addPCR {
				return fmt.Errorf("--add-kubernetes and --add-pcr-policy: give one at a time")
			}
			if addKube {
				return addKubeKeys(g, dir, cluster)
			}
			if addPCR {
				ks, err := sign.AddPCRPolicyKey(dir)
				if err != nil {
					return err
				}
				return printKeySet(g, ks)
			}
			ks, err := sign.InitKeys(cmd.Context(), dir, sign.InitOptions{Cluster: cluster, Now: time.Now()})
			if err != nil {
				return err
			}
			if err := printKeySet(g, ks); err != nil {
				return err
			}
			return initKubeKeys(g, dir, cluster)
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "keys", "directory to create the keys in")
	initCmd.Flags().StringVar(&cluster, "cluster", "kubedos", "cluster name written into the certificates")
	initCmd.Flags().BoolVar(&addKube, "add-kubernetes", false, "add only the Kubernetes CAs and service-account key to an existing key directory")
	initCmd.Flags().BoolVar(&addPCR, "add-pcr-policy", false, "add only the PCR policy key to an existing key directory")
	showCmd := &cobra.Command{
		Use:   "show",
		Short: "Check a key directory and print its public identities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			ks, err := sign.LoadKeySet(dir)
			if err != nil {
				return err
			}
			return printKeySet(g, ks)
		},
	}
	showCmd.Flags().StringVar(&dir, "dir", "keys", "key directory")
	cmd.AddCommand(initCmd, showCmd, keysIssueCmd(g), keysRevokeCmd(g))
	return cmd
}

type keyReport struct {
	Dir     string            `json:"dir"`
	Private bool              `json:"private"`
	Owner   string            `json:"owner"`
	Certs   map[string]string `json:"certificates"` // name → sha256 of DER
	// PCRPolicy is the PCR policy key's fingerprint (sha256 of its PKCS #1 DER,
	// the "pkfp" of a UKI's signed PCR policies).
	PCRPolicy string `json:"pcrPolicyKey"`
}

func printKeySet(g *globals, ks *sign.KeySet) error {
	rep := keyReport{Dir: ks.Dir, Private: ks.Private, Owner: ks.Owner.String(), Certs: map[string]string{}, PCRPolicy: tpmseal.Fingerprint(ks.PCRPolicyPub)}
	for name, c := range map[string][]byte{"PK": ks.PK.Raw, "KEK": ks.KEK.Raw, "db": ks.DB.Raw, "ca": ks.CA.Raw, "admin": ks.Admin.Raw} {
		rep.Certs[name] = sha256Hex(c)
	}
	if g.output == OutputJSON {
		return g.writeJSON(rep)
	}
	fmt.Fprintf(g.stdout, "keys in %s (private halves present: %v)\n", rep.Dir, rep.Private)
	fmt.Fprintf(g.stdout, "  signature owner GUID  %s\n", rep.Owner)
	for _, n := range []string{"PK", "KEK", "db", "ca", "admin"} {
		fmt.Fprintf(g.stdout, "  %-5s sha256 %s\n", n, rep.Certs[n])
	}
	fmt.Fprintf(g.stdout, "  PCR policy key sha256 %s\n", rep.PCRPolicy)
	return nil
}

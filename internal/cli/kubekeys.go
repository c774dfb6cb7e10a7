package cli

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
)

// initKubeKeys makes the Kubernetes half of the key ceremony in dir: the
// Kubernetes, etcd and front-proxy CAs and the service-account key. It
// never overwrites (pki.InitKubeKeys refuses, naming the file).
func initKubeKeys(g *globals, dir, cluster string) error {
	if _, err := pki.InitKubeKeys(dir, cluster, time.Now()); err != nil {
		return err
	}
	if g.output != OutputJSON {
		fmt.Fprintf(g.stdout, "  kubernetes CAs (cluster, etcd, front-proxy) and service-account key in %s\n", filepath.Join(dir, pki.KubeDir))
	}
	return nil
}

// addKubeKeys is `keys init --add-kubernetes`: an existing key directory
// with its private halves gets the Kubernetes keys added, nothing else.
func addKubeKeys(g *globals, dir, cluster string) error {
	ks, err := sign.LoadKeySet(dir)
	if err != nil {
		return err
	}
	if !ks.Private {
		return fmt.Errorf("%s is a public-only copy of the keys: run --add-kubernetes where the private keys are", dir)
	}
	if err := initKubeKeys(g, dir, cluster); err != nil {
		return err
	}
	return printKeySet(g, ks)
}

// kubeCAsIfPresent loads the Kubernetes CAs of a key directory, or nil if
// the ceremony that made it predates them (the hub then issues no
// Kubernetes certificates).
func kubeCAsIfPresent(dir string) (*pki.KubeCAs, error) {
	if !pki.HasKubeKeys(dir) {
		return nil, nil
	}
	return pki.LoadKubeCAs(dir)
}

package earlyboot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kubedos/kubedos/internal/boundedio"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/nodeid"
)

// IdentityFile is where a bare-metal node keeps the identity an operator
// typed on its console (Day 0: no SMBIOS strings). It is on the state
// partition through /var's overlay, so it is sealed with the rest of the
// node's state; kubedos-init reads it under /sysroot once state is mounted.
var IdentityFile = "/var/lib/kubedos/nodeid.conf"

// maxIdentityFile bounds what is read: four pairs of at most 253 bytes.
const maxIdentityFile = 4096

// ReadIdentityFile adds the pairs of the identity file at path to pairs,
// keys already there winning (nodeid.ParseFile). A missing file adds
// nothing.
func ReadIdentityFile(pairs map[string]string, path string) error {
	b, err := boundedio.ReadFile(path, maxIdentityFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the node identity: %w", err)
	}
	nodeid.ParseFile(pairs, b)
	return nil
}

// NodeIdentity is the machine's identity pairs: SMBIOS's (the deploy
// step's word wins), then the identity file's for the keys SMBIOS did not
// set.
func NodeIdentity(identityFile string) (map[string]string, error) {
	pairs, err := OEMStrings()
	if err != nil {
		return nil, err
	}
	if err := ReadIdentityFile(pairs, identityFile); err != nil {
		return nil, err
	}
	return pairs, nil
}

// WriteIdentityFile keeps id at path durably (the node's console is its
// only writer). The identity must name a hub, the node and its address:
// that is what a bare-metal node lacks to enroll.
func WriteIdentityFile(path string, id nodeid.Identity) error {
	if id.Hub == "" || id.Name == "" || !id.Address.IsValid() {
		return fmt.Errorf("node identity: %s, %s and %s are required", nodeid.KeyName, nodeid.KeyAddress, nodeid.KeyHub)
	}
	b, err := id.File()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(path, b, 0o644)
}

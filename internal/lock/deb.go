package lock

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// debStanza builds a package's Packages-index stanza from its own control
// file (read with dpkg-deb, the format's reference tool) plus the pool
// fields, and checks that the file really is the locked package.
func debStanza(ctx context.Context, dpkgDeb, path string, p Package) (stanza, error) {
	if dpkgDeb == "" {
		dpkgDeb = "dpkg-deb"
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, dpkgDeb, "--field", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("package %s: dpkg-deb --field %s: %w: %s", p.Name, path, err, strings.TrimSpace(stderr.String()))
	}
	var ctrl stanza
	n := 0
	err := readStanzas(&stdout, nil, func(s stanza) error {
		n++
		ctrl = s
		return nil
	})
	if err != nil || n != 1 {
		return nil, fmt.Errorf("package %s: control file of %s is not one stanza (%d): %v", p.Name, path, n, err)
	}
	for _, f := range [][2]string{{"Package", p.Name}, {"Version", p.Version}, {"Architecture", p.Architecture}} {
		if got := ctrl.get(f[0]); got != f[1] {
			return nil, fmt.Errorf("package %s: %s has %s %q, the lock says %q", p.Name, path, f[0], got, f[1])
		}
	}
	out := make(stanza, 0, len(ctrl)+4)
	hasPriority := false
	for _, f := range ctrl {
		switch strings.ToLower(f.Name) {
		case "filename", "size", "md5sum", "sha1", "sha256", "sha512":
			continue // pool fields are ours to state, never the package's
		case "priority":
			// The archive's override wins, as in the mirror's own index.
			f.Value, hasPriority = p.Priority, true
		}
		out = append(out, f)
	}
	if !hasPriority {
		out = append(out, field{"Priority", p.Priority})
	}
	return append(out,
		field{"Filename", p.Filename},
		field{"Size", strconv.FormatInt(p.Size, 10)},
		field{"SHA256", p.SHA256},
	), nil
}

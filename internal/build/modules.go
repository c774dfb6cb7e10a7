package build

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ulikunitz/xz"
)

// InitrdModules are what kubedos-init needs to reach a verity root and an
// encrypted state on a virtio disk with Debian's cloud kernel (whose
// virtio_blk, dm and squashfs are modules); their dependencies are added
// from each module's modinfo. The TPM driver comes before dm-crypt (which
// may depend on the trusted-keys module, which wants a TPM), and the
// ciphers of aes-xts-plain64 are listed because dm-crypt finds them by
// name through request_module, and the initrd has no modprobe to answer.
// Built-in ones are skipped (modules.builtin).
var InitrdModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
	"virtio_blk", "dm-mod", "dm-bufio", "dm-verity", "squashfs", "overlay",
	"tpm_tis", "aes_generic", "ecb", "xts", "dm-crypt",
}

// moduleIndex maps a module name (with - and _ equal, as the kernel treats
// them) to its file under a kernel's module tree.
func moduleIndex(modDir string) (map[string]string, error) {
	idx := map[string]string{}
	err := filepath.WalkDir(modDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		// Bookworm's kernels ship plain .ko files, trixie's xz-compressed ones.
		for _, ext := range []string{".ko", ".ko.xz"} {
			if strings.HasSuffix(path, ext) {
				idx[normModule(strings.TrimSuffix(d.Name(), ext))] = path
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index kernel modules in %s: %w", modDir, err)
	}
	return idx, nil
}

func normModule(name string) string { return strings.ReplaceAll(name, "-", "_") }

// maxModule bounds a decompressed module (the largest in-tree ones are a
// few MiB).
const maxModule = 64 << 20

// readModule is a module's ELF bytes, decompressed when the tree ships it
// as .ko.xz: kubedos-init loads plain ELF with finit_module.
func readModule(path string) ([]byte, error) {
	if !strings.HasSuffix(path, ".ko.xz") {
		return os.ReadFile(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := xz.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, maxModule+1))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	if len(b) > maxModule {
		return nil, fmt.Errorf("module %s: more than %d bytes decompressed", path, maxModule)
	}
	return b, nil
}

// moduleName is the file name a module has in the initrd: plain .ko.
func moduleName(path string) string { return strings.TrimSuffix(filepath.Base(path), ".xz") }

// moduleDeps reads the depends= field of a module's .modinfo section.
func moduleDeps(path string) ([]string, error) {
	data, err := readModule(path)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", path, err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", path, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", path)
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo of %s: %w", path, err)
	}
	for _, field := range strings.Split(string(info), "\x00") {
		if v, ok := strings.CutPrefix(field, "depends="); ok && v != "" {
			return strings.Split(v, ","), nil
		}
	}
	return nil, nil
}

// resolveModules returns the files of want and their dependencies, each
// after everything it depends on. A wanted module absent from the tree is
// taken to be built into the kernel only if the tree's modules.builtin says so.
func resolveModules(modDir string, want []string) ([]string, error) {
	idx, err := moduleIndex(modDir)
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			builtin[normModule(strings.TrimSuffix(filepath.Base(line), ".ko"))] = true
		}
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = normModule(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		case 2:
			return nil
		}
		path, ok := idx[name]
		if !ok {
			if builtin[name] {
				state[name] = 2
				return nil
			}
			return fmt.Errorf("kernel module %s not found under %s (needed by %s)", name, modDir, strings.Join(chain, " -> "))
		}
		state[name] = 1
		deps, err := moduleDeps(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, path)
		return nil
	}
	for _, w := range want {
		if err := visit(w, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

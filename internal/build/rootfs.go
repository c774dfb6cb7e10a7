package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// BaseInput describes the base root every role of a build is derived from.
type BaseInput struct {
	Architecture string
	// Sources is the one APT source the root is made from: the darksite repo,
	// e.g. "deb [signed-by=/x/keyring.gpg] file:///x/repo kubedos main".
	Sources  string
	Packages []string // lock.BaseRequests, on top of Priority: required
	Epoch    int64    // SOURCE_DATE_EPOCH, from the lock
	Out      string   // directory to create; must not exist
}

// MakeBase composes the base root with mmdebstrap (apt's own solver,
// offline from the darksite repo): the suite's required set and the
// packages every role requests. It is composed once per build and each
// role's root starts from a copy of it, so the roles share the bulk of
// the work instead of each bootstrapping the same packages again.
func MakeBase(ctx context.Context, in BaseInput) error {
	if _, err := os.Stat(in.Out); err == nil {
		return fmt.Errorf("base root %s already exists", in.Out)
	}
	if _, err := runTool(ctx, mmdebstrapEnv(in.Epoch), "mmdebstrap", mmdebstrapArgs("required", in.Architecture, in.Packages, in.Out, in.Sources)...); err != nil {
		_ = os.RemoveAll(in.Out)
		return fmt.Errorf("base root: %w", err)
	}
	return nil
}

func mmdebstrapEnv(epoch int64) []string {
	return []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch, 10)}
}

// unsafeIOConf lets dpkg skip its fsync of every unpacked file while a
// root is built: the tree is thrown away if the build fails and read whole
// into a squashfs if not, so nothing needs it on disk in between. Under
// load (the emulated nodes' disks) the base took 90 s with it and 63 s
// without, the same CPU. A setup hook writes it and a customize hook
// removes it, so it is not in the image (--dpkgopt would leave it there).
const unsafeIOConf = "/etc/dpkg/dpkg.cfg.d/kubedos-build-unsafe-io"

func mmdebstrapArgs(variant, arch string, pkgs []string, out, sources string, extra ...string) []string {
	args := []string{"--mode=root", "--variant=" + variant, "--architectures=" + arch,
		"--aptopt=Acquire::Languages \"none\"", "--aptopt=Acquire::Retries \"0\"",
		`--setup-hook=mkdir -p "$1/etc/dpkg/dpkg.cfg.d" && echo force-unsafe-io > "$1` + unsafeIOConf + `"`,
		`--customize-hook=rm "$1` + unsafeIOConf + `"`}
	args = append(args, extra...)
	return append(args, "--include="+strings.Join(pkgs, ","), "kubedos", out, sources)
}

// RootfsInput describes one role's root filesystem.
type RootfsInput struct {
	Role         string
	Architecture string
	Sources      string // as BaseInput's
	// Base is the base root (MakeBase) the role starts from, made of
	// BasePackages; TakeBase moves it into place instead of copying it (no
	// other role needs it any more).
	Base         string
	TakeBase     bool
	BasePackages []string
	Packages     []string // the role's requests (lock.Requests): a superset of BasePackages
	Epoch        int64    // SOURCE_DATE_EPOCH, from the lock
	Kubedosd     string   // the node daemon binary to install
	CACert       []byte   // the cluster CA (PEM): nodes check the hub against it
	// ArtifactPub (PKIX PEM) and DBCert (PEM) let a node check an upgrade's
	// signed manifest and its UKI's Authenticode signature before writing.
	ArtifactPub []byte
	DBCert      []byte
	// Kube is what the role carries of Kubernetes; nil for none.
	Kube *KubeRoot
	Out  string // directory to create; must not exist
}

// MakeRootfs derives a role's root from the base: the base under an
// overlay (or a copy of it, or the base itself when TakeBase), the
// packages the role requests beyond the base installed by mmdebstrap (apt's
// own solver, offline from the darksite repo) into it, then kubedosd and
// the role's config. However the base was placed, the tree is the same and
// so is every byte of the role's image. The caller calls release, which
// unmounts the overlay, once it no longer reads the root (and before it
// removes it); release is never nil.
func MakeRootfs(ctx context.Context, in RootfsInput) (release func(), err error) {
	if _, err := os.Stat(in.Out); err == nil {
		return func() {}, fmt.Errorf("rootfs %s already exists", in.Out)
	}
	release, err = placeBase(ctx, in.Base, in.Out, in.TakeBase)
	if err != nil {
		return release, fmt.Errorf("rootfs for role %s: %w", in.Role, err)
	}
	if extra := missingFrom(in.Packages, in.BasePackages); len(extra) > 0 {
		// mmdebstrap populates /dev itself and refuses to mknod over the
		// base's nodes; it makes the same ones again.
		if err := emptyDir(filepath.Join(in.Out, "dev")); err != nil {
			return release, fmt.Errorf("rootfs for role %s: %w", in.Role, err)
		}
		// The custom variant installs only what is asked and not yet
		// installed (the base's dpkg status says what is), with the same
		// solver and source as the base.
		args := mmdebstrapArgs("custom", in.Architecture, in.Packages, in.Out, in.Sources, "--skip=check/empty")
		if _, err := runTool(ctx, mmdebstrapEnv(in.Epoch), "mmdebstrap", args...); err != nil {
			return release, fmt.Errorf("rootfs for role %s (%s on the base): %w", in.Role, strings.Join(extra, ", "), err)
		}
	}
	if err := customizeRootfs(in); err != nil {
		return release, fmt.Errorf("rootfs for role %s: %w", in.Role, err)
	}
	return release, nil
}

// placeBase puts the base root at out: renamed when take; else the base,
// read-only, under an overlay whose upper layer takes the role's changes
// (beside out, in out's directory); else, where the filesystem has no
// overlay, a copy with everything a root carries (owners, modes, hard
// links, xattrs, device nodes). A copy cost each role 3.3 CPU-seconds of
// the reference's build (26.6 of its 200); the overlay costs only the
// files the role changes, and gives a byte-identical squashfs.
func placeBase(ctx context.Context, base, out string, take bool) (release func(), err error) {
	nothing := func() {}
	if base == "" {
		return nothing, fmt.Errorf("no base root to derive from")
	}
	if take {
		if err := os.Rename(base, out); err != nil {
			return nothing, fmt.Errorf("move base root: %w", err)
		}
		return nothing, nil
	}
	if release, err := overlayBase(base, out); err == nil {
		return release, nil
	}
	if _, err := runTool(ctx, nil, "cp", "-a", "--no-target-directory", base, out); err != nil {
		_ = os.RemoveAll(out)
		return nothing, fmt.Errorf("copy base root: %w", err)
	}
	return nothing, nil
}

// overlayBase mounts base read-only under out with an upper and work
// directory beside out. No inode, index or redirect features: the merged
// tree reads like a plain copy (the same hard links; mksquashfs gives the
// same bytes).
func overlayBase(base, out string) (release func(), err error) {
	upper, work := out+".upper", out+".work"
	// The paths go into the mount's option string, where these separate
	// options and layers.
	for _, p := range []string{base, upper, work} {
		if strings.ContainsAny(p, ",:\\") {
			return nil, fmt.Errorf("overlay on the base: %q holds a character overlayfs options cannot", p)
		}
	}
	for _, d := range []string{out, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	opts := "lowerdir=" + base + ",upperdir=" + upper + ",workdir=" + work + ",xino=off,index=off,metacopy=off,redirect_dir=off"
	if err := unix.Mount("overlay", out, "overlay", 0, opts); err != nil {
		for _, d := range []string{out, upper, work} {
			_ = os.RemoveAll(d)
		}
		return nil, fmt.Errorf("overlay on the base at %s: %w", out, err)
	}
	return func() {
		// A tool the build started may still hold it (cancelled): detach.
		if err := unix.Unmount(out, 0); err != nil {
			_ = unix.Unmount(out, unix.MNT_DETACH)
		}
	}, nil
}

// missingFrom is what of want is not in have.
func missingFrom(want, have []string) []string {
	var out []string
	for _, p := range want {
		if !slices.Contains(have, p) {
			out = append(out, p)
		}
	}
	return out
}

func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

const kubedosdUnit = `[Unit]
Description=kubedos node daemon
Documentation=https://kubedos.io/docs/kubedosd
# After the PCR phase units, so PCR 11 is quoted at the "ready" phase every
# time (systemd 252 extends "sysinit", then "ready").
After=local-fs.target sysinit.target systemd-pcrphase.service systemd-pcrphase-sysinit.service
Wants=sysinit.target

[Service]
Type=simple
ExecStart=/usr/bin/kubedosd
Restart=on-failure
RestartSec=2
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
`

// The boot deadline is the fallback that does not depend on kubedosd: a
// trial boot (systemd-boot set LoaderBootCountPath because the entry has
// tries left) that kubedosd has not marked good in time is rebooted, so the
// boot counter runs down to the previous slot even when kubedosd crashes or
// hangs. kubedosd writes /run/kubedos/boot-good when it blesses the boot.
const deadlineTimer = `[Unit]
Description=Reboot a trial boot that is not marked good in time

[Timer]
OnBootSec=6min
AccuracySec=5s

[Install]
WantedBy=timers.target
`

const deadlineService = `[Unit]
Description=Reboot a trial boot that kubedosd has not marked good
ConditionPathExists=/sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f
ConditionPathExists=!/run/kubedos/boot-good

[Service]
Type=oneshot
ExecStart=/bin/echo "kubedos: trial boot not marked good in time; rebooting to count the try down"
StandardOutput=journal+console
SuccessAction=reboot
`

// lanNetwork brings the LAN interface up with DHCP; the WireGuard planes
// come later, over it.
const lanNetwork = `[Match]
Name=en* eth*

[Network]
DHCP=ipv4
`

// NoLoginUnits are masked in every role's root: the node console
// (kubedosd) owns tty1, and root is locked, so a login prompt on tty1, on
// another VT or on the serial console (systemd's getty generator starts
// serial-getty@ttyS0 for console=ttyS0) would offer only a way in to guess
// at. Masking a template masks its instances; the instances kubedos would
// meet are masked by name too. Debian's getty-static starts getty@tty2–6
// when logind is absent, as here: masked with them, or it fails and the
// node's failed-units check with it.
var NoLoginUnits = []string{"getty@.service", "getty@tty1.service", "autovt@.service", "serial-getty@.service",
	"serial-getty@ttyS0.service", "serial-getty@hvc0.service", "console-getty.service", "container-getty@.service",
	"getty-static.service"}

// StartedByKubedosd are Debian units a package enables that kubedosd
// starts itself, with configuration only a booted node has: their enable
// links are dropped from every root (units not installed are skipped).
var StartedByKubedosd = []string{"prometheus.service"}

// customizeRootfs makes the root an immutable kubedos node: kubedosd
// enabled, mount points for state and data, no per-machine identity baked in
// and no file that records when the image was built.
func customizeRootfs(in RootfsInput) error {
	r := func(p string) string { return filepath.Join(in.Out, p) }
	bin, err := os.ReadFile(in.Kubedosd)
	if err != nil {
		return err
	}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{"usr/bin/kubedosd", bin, 0o755},
		{"etc/systemd/system/kubedosd.service", []byte(kubedosdUnit), 0o644},
		{"etc/kubedos/role", []byte(in.Role + "\n"), 0o644},
		{"etc/kubedos/ca.crt", in.CACert, 0o644},
		{"etc/kubedos/artifact.pub", in.ArtifactPub, 0o644},
		{"etc/kubedos/db.crt", in.DBCert, 0o644},
		{"etc/systemd/system/kubedos-boot-deadline.service", []byte(deadlineService), 0o644},
		{"etc/systemd/system/kubedos-boot-deadline.timer", []byte(deadlineTimer), 0o644},
		{"etc/systemd/network/80-kubedos-lan.network", []byte(lanNetwork), 0o644},
		{"etc/hostname", []byte("kubedos-" + in.Role + "\n"), 0o644},
		// Empty: systemd makes a transient machine-id on the read-only root.
		{"etc/machine-id", nil, 0o444},
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(r(f.path)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(r(f.path), f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(r(f.path), f.mode); err != nil {
			return err
		}
	}
	// /tmp must be writable on a read-only root: bookworm ships tmp.mount
	// aside in /usr/share/systemd, trixie among systemd's units.
	tmpMount := ""
	for _, p := range []string{"/usr/lib/systemd/system/tmp.mount", "/usr/share/systemd/tmp.mount"} {
		if _, err := os.Stat(r(p)); err == nil {
			tmpMount = p
			break
		}
	}
	if tmpMount == "" {
		return fmt.Errorf("role %s: no tmp.mount in the root (neither systemd's unit directory nor /usr/share/systemd): /tmp would stay on the read-only root", in.Role)
	}
	links := map[string]string{
		"etc/systemd/system/multi-user.target.wants/kubedosd.service":         "/etc/systemd/system/kubedosd.service",
		"etc/systemd/system/timers.target.wants/kubedos-boot-deadline.timer":  "/etc/systemd/system/kubedos-boot-deadline.timer",
		"etc/systemd/system/tmp.mount":                                        tmpMount,
		"etc/systemd/system/local-fs.target.wants/tmp.mount":                  tmpMount,
		"etc/systemd/system/multi-user.target.wants/systemd-networkd.service": "/lib/systemd/system/systemd-networkd.service",
		"etc/systemd/system/sockets.target.wants/systemd-networkd.socket":     "/lib/systemd/system/systemd-networkd.socket",
		// The root is verity-protected squashfs: there is nothing to remount.
		"etc/systemd/system/systemd-remount-fs.service": "/dev/null",
		// kubedos-init opens and mounts every partition (state and data are
		// encrypted): systemd must not mount them again by their GPT type
		// (the data partition's /srv type would make a srv.mount of the raw,
		// encrypted partition fail and stop the boot).
		"etc/systemd/system-generators/systemd-gpt-auto-generator": "/dev/null",
	}
	for _, unit := range NoLoginUnits {
		links["etc/systemd/system/"+unit] = "/dev/null"
	}
	// Debian enables getty@tty1 in getty.target: the mask wins, the link
	// would only be a masked unit's warning.
	_ = os.Remove(r("etc/systemd/system/getty.target.wants/getty@tty1.service"))
	for link, target := range links {
		// A link to nothing is a unit systemd cannot load: the image
		// would boot without it and say so only on the console.
		if _, err := os.Stat(r(target)); err != nil && target != "/dev/null" {
			return fmt.Errorf("role %s: %s would link to %s, which the root does not have", in.Role, link, target)
		}
		if err := os.MkdirAll(filepath.Dir(r(link)), 0o755); err != nil {
			return err
		}
		_ = os.Remove(r(link))
		if err := os.Symlink(target, r(link)); err != nil {
			return err
		}
	}
	// Debian's prometheus package enables its unit with Debian's
	// configuration (storage and listening address on every interface):
	// on a kubedos node kubedosd starts it with the cluster's, once the
	// observability plane it listens on is up (docs/observability.md).
	for _, unit := range StartedByKubedosd {
		if err := dropLinksTo(r("etc/systemd/system"), unit); err != nil {
			return err
		}
	}
	if in.Kube != nil {
		if err := installKube(in.Out, in.Kube, in.Architecture, in.Epoch); err != nil {
			return fmt.Errorf("kubernetes: %w", err)
		}
	}
	for _, d := range []string{"state", "data", "efi"} {
		if err := os.MkdirAll(r(d), 0o755); err != nil {
			return err
		}
	}
	// Build-time state that differs between two identical builds, or that
	// points at the build host's darksite repo.
	for _, p := range []string{"var/cache/ldconfig/aux-cache", "var/lib/dbus/machine-id", "etc/apt/sources.list",
		"var/log/dpkg.log", "var/log/alternatives.log", "var/log/bootstrap.log"} {
		_ = os.Remove(r(p))
	}
	for _, glob := range []string{"var/log/apt/*", "var/cache/apt/*.bin", "var/lib/apt/lists/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old"} {
		matches, _ := filepath.Glob(r(glob))
		for _, m := range matches {
			_ = os.RemoveAll(m)
		}
	}
	return nil
}

// KernelOf finds the one kernel of a root and its module directory.
func KernelOf(rootfs string) (kernel, modDir, version string, err error) {
	ks, _ := filepath.Glob(filepath.Join(rootfs, "boot", "vmlinuz-*"))
	if len(ks) != 1 {
		return "", "", "", fmt.Errorf("root %s has %d kernels in /boot, want exactly 1", rootfs, len(ks))
	}
	version = strings.TrimPrefix(filepath.Base(ks[0]), "vmlinuz-")
	modDir = filepath.Join(rootfs, "lib", "modules", version)
	if _, err := os.Stat(modDir); err != nil {
		return "", "", "", fmt.Errorf("kernel %s has no modules: %w", version, err)
	}
	return ks[0], modDir, version, nil
}

package lock

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DebianArchiveKeyring is the keyring apt verifies the mirror's Release with.
const DebianArchiveKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// aptEnv is a private APT configuration in a temporary directory: its own
// sources, lists, cache and an empty dpkg status, so resolution sees an
// empty system and neither reads nor changes the host's apt state.
type aptEnv struct {
	dir    string
	conf   string
	aptGet string
}

// aptConfTmpl is loaded through APT_CONFIG, which apt reads before the
// parts directory; pointing Dir::Etc at our own directory then keeps the
// host's /etc/apt/apt.conf.d out entirely (a -o option would come too late
// to stop those files from being read).
const aptConfTmpl = `Dir "/";
Dir::Etc "%[1]s/etc";
Dir::Etc::main "apt.conf";
Dir::Etc::Parts "%[1]s/etc/apt.conf.d";
Dir::Etc::SourceList "%[1]s/etc/sources.list";
Dir::Etc::SourceParts "%[1]s/etc/sources.list.d";
Dir::Etc::Preferences "%[1]s/etc/preferences";
Dir::Etc::PreferencesParts "%[1]s/etc/preferences.d";
Dir::Etc::Trusted "%[1]s/etc/trusted.gpg";
Dir::Etc::TrustedParts "%[1]s/etc/trusted.gpg.d";
Dir::State "%[1]s/state";
Dir::State::status "%[1]s/status";
Dir::Cache "%[1]s/cache";
Dir::Log "%[1]s/log";
APT::Architecture "%[2]s";
APT::Architectures { "%[2]s"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Get::Update::SourceListWarnings "false";
Acquire::Languages "none";
Acquire::GzipIndexes "false";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Debug::NoLocking "true";
`

// newAptEnv lays out the private configuration under a fresh directory in
// parent (the system temp dir when empty), with extra files (relative
// paths) written into it. The sources list starts empty: see setSources.
func newAptEnv(parent, arch string, extra map[string][]byte, aptGet string) (*aptEnv, error) {
	dir, err := os.MkdirTemp(parent, "kubedos-apt-*")
	if err != nil {
		return nil, fmt.Errorf("lock: apt work dir: %w", err)
	}
	// Paths below dir go into apt.conf strings and a one-line sources
	// entry, neither of which can quote these characters.
	if strings.ContainsAny(dir, " \t\n\"[]") {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lock: apt work dir %q: choose a temporary directory without spaces, quotes or brackets", dir)
	}
	// apt downloads as the unprivileged _apt user when run as root; it must
	// be able to reach lists/partial below this directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lock: apt work dir: %w", err)
	}
	e := &aptEnv{dir: dir, conf: filepath.Join(dir, "apt.conf"), aptGet: aptGet}
	if e.aptGet == "" {
		e.aptGet = "apt-get"
	}
	for _, d := range []string{"etc/apt.conf.d", "etc/sources.list.d", "etc/preferences.d", "etc/trusted.gpg.d",
		"state/lists/partial", "cache/archives/partial", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("lock: apt work dir: %w", err)
		}
	}
	files := map[string][]byte{
		"apt.conf":         fmt.Appendf(nil, aptConfTmpl, dir, arch),
		"etc/sources.list": nil,
		"status":           nil,
	}
	maps.Copy(files, extra)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("lock: apt work dir: %w", err)
		}
	}
	return e, nil
}

func (e *aptEnv) close() { os.RemoveAll(e.dir) }

// path is a file inside the private configuration.
func (e *aptEnv) path(rel string) string { return filepath.Join(e.dir, rel) }

// setSources writes the sources.list.
func (e *aptEnv) setSources(body string) error {
	if err := os.WriteFile(e.path("etc/sources.list"), []byte(body), 0o644); err != nil {
		return fmt.Errorf("lock: apt work dir: %w", err)
	}
	return nil
}

func (e *aptEnv) listsDir() string { return filepath.Join(e.dir, "state", "lists") }

// run executes apt-get with the private configuration and returns stdout;
// a failure carries apt's own stderr, which names the missing package or
// the signature problem.
func (e *aptEnv) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, e.aptGet, args...)
	// C locale: the output is parsed, and must not be translated.
	cmd.Env = append(os.Environ(), "APT_CONFIG="+e.conf, "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return nil, fmt.Errorf("apt-get %s: %w: %s", args[0], err, msg)
	}
	return stdout.Bytes(), nil
}

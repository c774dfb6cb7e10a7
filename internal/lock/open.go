package lock

import (
	"fmt"
	"os"
	"path/filepath"
)

// OpenRepo finds a darksite repository that Fetch laid out earlier. It only
// checks the repository is there: apt verifies its signature against the
// keyring when a build installs from it.
func OpenRepo(dir string) (*Repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("lock: repo %s: %w", dir, err)
	}
	r := &Repo{Dir: abs, Keyring: filepath.Join(abs, KeyringName)}
	for _, f := range []string{r.Keyring, filepath.Join(abs, "dists", RepoSuite, "InRelease")} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("lock: no darksite repo at %s: %w", abs, err)
		}
	}
	return r, nil
}

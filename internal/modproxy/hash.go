package modproxy

import (
	"archive/zip"
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// The module hashes of go.sum and build info ("h1:"): the sha256, in
// base64, of a summary that lists each file's sha256 (hex), two spaces and
// its name, one line per file sorted by name. A module's go.mod alone is
// hashed as the one file "go.mod"; its zip as its files under their names
// in the zip (module@version/…).

// modHash is the h1 hash of the go.mod file at p.
func modHash(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return summaryHash([]string{fmt.Sprintf("%x  go.mod\n", h.Sum(nil))}), nil
}

// zipHash is the h1 hash of the module zip at p.
func zipHash(p string) (string, error) {
	z, err := zip.OpenReader(p)
	if err != nil {
		return "", err
	}
	defer z.Close()
	lines := make([]string, 0, len(z.File))
	for _, zf := range z.File {
		if strings.Contains(zf.Name, "\n") {
			return "", fmt.Errorf("%s: a file name with a newline", p)
		}
		r, err := zf.Open()
		if err != nil {
			return "", fmt.Errorf("%s: %s: %w", p, zf.Name, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %s: %w", p, zf.Name, err)
		}
		lines = append(lines, fmt.Sprintf("%x  %s\n", h.Sum(nil), zf.Name))
	}
	return summaryHash(lines), nil
}

// summaryHash sorts the summary's lines by file name (the hex digest
// before it has a fixed width) and hashes them.
func summaryHash(lines []string) string {
	sort.Slice(lines, func(i, j int) bool { return lines[i][64+2:] < lines[j][64+2:] })
	h := sha256.New()
	for _, l := range lines {
		io.WriteString(h, l)
	}
	return "h1:" + base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// readGoSum maps "path@version" and "path@version/go.mod" to their h1
// hashes in the go.sum file p.
func readGoSum(p string) (map[string]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s:%d: not \"module version hash\"", p, n)
		}
		if strings.HasPrefix(fields[2], "h1:") {
			sums[fields[0]+"@"+fields[1]] = fields[2]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return sums, nil
}

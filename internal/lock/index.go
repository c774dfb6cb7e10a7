package lock

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// release is what Resolve needs from the mirror's (In)Release file.
type release struct {
	Suite, Codename string
	Date            time.Time
}

// readRelease reads the Release file apt fetched and verified into lists.
// apt has already checked its signature against the keyring, so the
// clear-signed text is only unwrapped here, not verified again.
func readRelease(lists string) (release, error) {
	var files []string
	for _, pat := range []string{"*_InRelease", "*_Release"} {
		m, err := filepath.Glob(filepath.Join(lists, pat))
		if err != nil {
			return release{}, err
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		return release{}, errors.New("apt fetched no Release file")
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return release{}, err
	}
	if b, _ := clearsign.Decode(data); b != nil {
		data = b.Plaintext
	}
	return parseRelease(data, files[0])
}

func parseRelease(data []byte, name string) (release, error) {
	var first stanza
	err := readStanzas(bytes.NewReader(data), map[string]bool{"Suite": true, "Codename": true, "Date": true},
		func(s stanza) error {
			if first == nil {
				first = s
			}
			return nil
		})
	if err != nil {
		return release{}, fmt.Errorf("%s: %w", name, err)
	}
	date := first.get("Date")
	var t time.Time
	for _, layout := range []string{time.RFC1123, time.RFC1123Z} {
		if t, err = time.Parse(layout, date); err == nil {
			break
		}
	}
	if err != nil || t.IsZero() {
		return release{}, fmt.Errorf("%s: Date %q is not an RFC 1123 date", name, date)
	}
	return release{Suite: first.get("Suite"), Codename: first.get("Codename"), Date: t.UTC()}, nil
}

// index is the part of the archive's Packages indexes Resolve looks up.
type index struct {
	byFilename map[string]Package
	// required lists every Priority: required or Essential: yes package,
	// the set mmdebstrap's required variant starts from.
	required []string
}

// readIndexes parses every binary-<arch> Packages index apt fetched.
func readIndexes(lists, arch string) (*index, error) {
	files, err := filepath.Glob(filepath.Join(lists, "*_binary-"+arch+"_Packages"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("apt fetched no Packages index for %s", arch)
	}
	idx := &index{byFilename: map[string]Package{}}
	keep := map[string]bool{"Package": true, "Version": true, "Architecture": true, "Filename": true,
		"Size": true, "SHA256": true, "Priority": true, "Essential": true}
	required := map[string]bool{}
	for _, f := range files {
		if err := readIndex(f, keep, idx, required); err != nil {
			return nil, err
		}
	}
	for n := range required {
		idx.required = append(idx.required, n)
	}
	slices.Sort(idx.required)
	return idx, nil
}

func readIndex(path string, keep map[string]bool, idx *index, required map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = readStanzas(f, keep, func(s stanza) error {
		size, err := strconv.ParseInt(s.get("Size"), 10, 64)
		if err != nil {
			return fmt.Errorf("package %s: Size: %w", s.get("Package"), err)
		}
		p := Package{Name: s.get("Package"), Version: s.get("Version"), Architecture: s.get("Architecture"),
			SHA256: s.get("SHA256"), Size: size, Filename: s.get("Filename"), Priority: s.get("Priority")}
		if p.Priority == "" {
			p.Priority = "optional" // policy §2.5: the default when unset
		}
		idx.byFilename[p.Filename] = p
		if s.get("Priority") == "required" || s.get("Essential") == "yes" {
			required[p.Name] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// printedURI is one line of `apt-get install --print-uris`:
// 'URI' local-filename size SHA256:hex
type printedURI struct {
	URI    string
	Size   int64
	SHA256 string
}

func parsePrintURIs(out []byte) ([]printedURI, error) {
	var list []printedURI
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 || len(f[0]) < 2 || f[0][0] != '\'' || f[0][len(f[0])-1] != '\'' {
			return nil, fmt.Errorf("unexpected apt-get --print-uris line %q", line)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("apt-get --print-uris line %q: size: %w", line, err)
		}
		sum, ok := strings.CutPrefix(f[3], "SHA256:")
		if !ok {
			return nil, fmt.Errorf("apt-get --print-uris line %q: no SHA256 (is Acquire::ForceHash honoured?)", line)
		}
		list = append(list, printedURI{URI: strings.Trim(f[0], "'"), Size: size, SHA256: sum})
	}
	if len(list) == 0 {
		return nil, errors.New("apt-get --print-uris printed no packages")
	}
	return list, nil
}

// lookup maps a URI apt would download to its index entry and checks that
// apt and the index agree on size and digest.
func (idx *index) lookup(mirror string, u printedURI) (Package, error) {
	pu, err := url.Parse(u.URI)
	if err != nil {
		return Package{}, fmt.Errorf("apt URI %q: %w", u.URI, err)
	}
	mu, err := url.Parse(mirror)
	if err != nil {
		return Package{}, fmt.Errorf("mirror %q: %w", mirror, err)
	}
	// Compare decoded paths: apt escapes '+' and ':' in pool file names.
	rel, ok := strings.CutPrefix(pu.Path, strings.TrimRight(mu.Path, "/")+"/")
	if !ok || pu.Scheme != mu.Scheme || !strings.EqualFold(pu.Host, mu.Host) {
		return Package{}, fmt.Errorf("apt URI %q is not below the mirror %s", u.URI, mirror)
	}
	p, ok := idx.byFilename[rel]
	if !ok {
		return Package{}, fmt.Errorf("apt URI %q: %s is in no Packages index", u.URI, rel)
	}
	if p.SHA256 != u.SHA256 || p.Size != u.Size {
		return Package{}, fmt.Errorf("package %s: apt and the Packages index disagree on size/sha256", p.Name)
	}
	return p, nil
}

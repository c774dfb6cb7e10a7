package sign

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestInitKeysLayout(t *testing.T) {
	ks := sharedKeys(t)
	if !ks.Private {
		t.Error("Private = false for a fresh key set")
	}
	for _, sub := range keyDirs {
		fi := must(os.Stat(filepath.Join(ks.Dir, sub)))(t)
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v, want 0700", sub, fi.Mode().Perm())
		}
	}
	for _, rel := range privateFiles {
		fi := must(os.Stat(ks.Path(rel)))(t)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", rel, fi.Mode().Perm())
		}
	}
	for _, rel := range publicFiles {
		if _, err := os.Stat(ks.Path(rel)); err != nil {
			t.Error(err)
		}
	}
	for _, c := range []struct {
		cert *x509.Certificate
		cn   string
	}{{ks.PK, "kubedos test PK"}, {ks.KEK, "kubedos test KEK"}, {ks.DB, "kubedos test db"}} {
		pub, ok := c.cert.PublicKey.(*rsa.PublicKey)
		if !ok || pub.N.BitLen() != 2048 {
			t.Errorf("%s: want RSA 2048, got %T", c.cn, c.cert.PublicKey)
		}
		if c.cert.Subject.CommonName != c.cn {
			t.Errorf("CN %q, want %q", c.cert.Subject.CommonName, c.cn)
		}
		if err := c.cert.CheckSignatureFrom(c.cert); err != nil {
			t.Errorf("%s is not self-signed: %v", c.cn, err)
		}
		if !c.cert.NotBefore.Before(ceremonyTime) || c.cert.NotAfter.Before(ceremonyTime.AddDate(29, 0, 0)) {
			t.Errorf("%s validity %v..%v", c.cn, c.cert.NotBefore, c.cert.NotAfter)
		}
	}
	if _, ok := ks.CA.PublicKey.(*ecdsa.PublicKey); !ok || !ks.CA.IsCA || ks.CA.MaxPathLen != 0 || !ks.CA.MaxPathLenZero {
		t.Errorf("CA: key %T, IsCA %v, MaxPathLen %d (zero %v); want ECDSA, CA, pathlen 0",
			ks.CA.PublicKey, ks.CA.IsCA, ks.CA.MaxPathLen, ks.CA.MaxPathLenZero)
	}
	if ks.Admin.Subject.CommonName != "admin" || !slices.Equal(ks.Admin.Subject.Organization, []string{"kubedos:admin"}) ||
		!slices.Equal(ks.Admin.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || ks.Admin.IsCA {
		t.Errorf("admin: subject %v, EKU %v, IsCA %v", ks.Admin.Subject, ks.Admin.ExtKeyUsage, ks.Admin.IsCA)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ks.CA)
	if _, err := ks.Admin.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: ceremonyTime,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin does not chain to the CA: %v", err)
	}
	owner := strings.TrimSpace(string(readFile(t, ks.Path(FileOwnerGUID))))
	if owner != ks.Owner.String() {
		t.Errorf("owner.guid %q, KeySet.Owner %v", owner, ks.Owner)
	}
}

// dirListing lists every path under root, to prove a failed call wrote
// nothing.
func dirListing(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestInitKeysNeverOverwrites(t *testing.T) {
	for _, rel := range []string{FilePKKey, FileCACert, FileSigningPub, FileOwnerGUID, "ca"} {
		t.Run(rel, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "keys")
			p := filepath.Join(dir, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if rel == "ca" {
				os.Mkdir(p, 0o700)
			} else {
				os.WriteFile(p, []byte("precious"), 0o600)
			}
			before := dirListing(t, parent)
			_, err := InitKeys(context.Background(), dir, InitOptions{Cluster: "x"})
			if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), p) {
				t.Fatalf("err = %v, want ErrExists naming %s", err, p)
			}
			if after := dirListing(t, parent); !slices.Equal(before, after) {
				t.Errorf("files changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestInitKeysIntoExistingDir(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(dir string)
	}{
		{"empty dir", func(dir string) { os.Mkdir(dir, 0o755) }},
		{"dir with other files", func(dir string) {
			os.Mkdir(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "README"), []byte("hi"), 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "keys")
			tc.setup(dir)
			ks, err := InitKeys(context.Background(), dir, InitOptions{Cluster: "x"})
			if err != nil {
				t.Fatal(err)
			}
			if !ks.Private {
				t.Error("Private = false")
			}
			if _, err := os.Stat(filepath.Join(dir, "README")); tc.name == "dir with other files" && err != nil {
				t.Errorf("unrelated file lost: %v", err)
			}
			if entries := must(os.ReadDir(parent))(t); len(entries) != 1 {
				t.Errorf("staging left behind in %s: %v", parent, entries)
			}
			// A second ceremony refuses, naming the first key file.
			if _, err := InitKeys(context.Background(), dir, InitOptions{Cluster: "x"}); !errors.Is(err, ErrExists) {
				t.Errorf("second InitKeys = %v, want ErrExists", err)
			}
		})
	}
}

func TestInitKeysBadInput(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		opts InitOptions
		msg  string
	}{
		{"no cluster", context.Background(), InitOptions{}, "cluster name is empty"},
		{"control character", context.Background(), InitOptions{Cluster: "a\nb"}, "non-printable"},
		{"too long", context.Background(), InitOptions{Cluster: strings.Repeat("a", 65)}, "longer than 64"},
		{"cancelled", cancelled, InitOptions{Cluster: "x"}, "context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			_, err := InitKeys(tc.ctx, filepath.Join(parent, "keys"), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %q", err, tc.msg)
			}
			if entries := must(os.ReadDir(parent))(t); len(entries) != 0 {
				t.Errorf("wrote %v", entries)
			}
		})
	}
}

// copyKeys copies the shared key set so a test can damage it.
func copyKeys(t *testing.T, ks *KeySet) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "keys")
	for _, rel := range append(append([]string{}, privateFiles...), publicFiles...) {
		p := filepath.Join(dst, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, readFile(t, ks.Path(rel)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestLoadKeySetErrors(t *testing.T) {
	ks := sharedKeys(t)
	tests := []struct {
		name   string
		damage func(dir string)
		file   string
		want   error
	}{
		{"missing certificate", func(d string) { os.Remove(filepath.Join(d, FileKEKCert)) }, FileKEKCert, fs.ErrNotExist},
		{"garbage certificate", func(d string) { os.WriteFile(filepath.Join(d, FileDBCert), []byte("nope"), 0o644) }, FileDBCert, ErrBadKeyFile},
		{"key where a certificate belongs", func(d string) {
			os.WriteFile(filepath.Join(d, FileDBCert), readFile(t, ks.Path(FileDBKey)), 0o644)
		}, FileDBCert, ErrBadKeyFile},
		{"bad owner GUID", func(d string) { os.WriteFile(filepath.Join(d, FileOwnerGUID), []byte("zzz\n"), 0o644) }, FileOwnerGUID, ErrBadKeyFile},
		{"ESL of another certificate", func(d string) {
			os.WriteFile(filepath.Join(d, FileDBESL), readFile(t, ks.Path(FileKEKESL)), 0o644)
		}, FileDBESL, ErrBadKeyFile},
		{"auth of another variable", func(d string) {
			os.WriteFile(filepath.Join(d, FilePKAuth), readFile(t, ks.Path(FileKEKAuth)), 0o644)
		}, FilePKAuth, ErrBadKeyFile},
		{"private key swapped", func(d string) {
			os.WriteFile(filepath.Join(d, FileDBKey), readFile(t, ks.Path(FileKEKKey)), 0o600)
		}, FileDBKey, ErrBadKeyFile},
		{"one private key missing", func(d string) { os.Remove(filepath.Join(d, FileCAKey)) }, FileCAKey, ErrBadKeyFile},
		{"admin not from this CA", func(d string) {
			otherCA := must(newClusterCA("other", ceremonyTime))(t)
			other := must(newClientCert(otherCA, "admin", "admin", ceremonyTime))(t)
			os.WriteFile(filepath.Join(d, FileAdminCert), encodeCertPEM(other.cert), 0o644)
		}, FileAdminCert, ErrBadKeyFile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyKeys(t, ks)
			tc.damage(dir)
			_, err := LoadKeySet(dir)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, filepath.FromSlash(tc.file))) {
				t.Errorf("err = %v, want it to name %s", err, tc.file)
			}
		})
	}
}

func TestExportPublic(t *testing.T) {
	ks := sharedKeys(t)
	dst := filepath.Join(t.TempDir(), "bundle", "keys")
	pub, err := ks.ExportPublic(dst)
	if err != nil {
		t.Fatal(err)
	}
	if pub.Private {
		t.Error("public copy reports private keys")
	}
	for _, rel := range privateFiles {
		if _, err := os.Stat(pub.Path(rel)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s in public copy: %v", rel, err)
		}
	}
	if !pub.DB.Equal(ks.DB) || !pub.CA.Equal(ks.CA) || !pub.SigningPub.Equal(ks.SigningPub) || pub.Owner != ks.Owner {
		t.Error("public copy differs from the original")
	}
	if _, err := pub.SigningKey(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SigningKey on a public copy = %v, want not-exist", err)
	}
	if _, err := ks.ExportPublic(dst); !errors.Is(err, ErrExists) {
		t.Errorf("second export = %v, want ErrExists", err)
	}
}

// TestAddPCRPolicyKey: a key directory from before the PCR policy key is
// refused with the command that fixes it; the command adds the key and
// nothing else, and never replaces one.
func TestAddPCRPolicyKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	ks, err := InitKeys(context.Background(), dir, InitOptions{Cluster: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if ks.PCRPolicyPub == nil || ks.PCRPolicyPub.N.BitLen() != 2048 {
		t.Fatalf("new key directory has no RSA-2048 PCR policy key: %v", ks.PCRPolicyPub)
	}
	if _, err := ks.PCRPolicyKey(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(ks.Path(FileSigningKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{FilePCRPolicyKey, FilePCRPolicyPub} {
		if err := os.Remove(ks.Path(rel)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadKeySet(dir); err == nil || !strings.Contains(err.Error(), "--add-pcr-policy") {
		t.Fatalf("old key directory: %v, want the --add-pcr-policy hint", err)
	}
	added, err := AddPCRPolicyKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if added.PCRPolicyPub.Equal(ks.PCRPolicyPub) {
		t.Fatal("the added key is the removed one")
	}
	if st, err := os.Stat(added.Path(FilePCRPolicyKey)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private half: %v %v", st, err)
	}
	if after, _ := os.ReadFile(ks.Path(FileSigningKey)); string(after) != string(before) {
		t.Fatal("adding the PCR policy key touched the artifact key")
	}
	if _, err := AddPCRPolicyKey(dir); err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Fatalf("second add: %v", err)
	}
}

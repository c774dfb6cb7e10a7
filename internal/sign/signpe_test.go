package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Real EFI binaries from Debian's systemd-boot-efi; tests that need them skip
// where they are not installed.
var realEFI = []string{
	"/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
	"/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
}

func needFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s not present: %v", path, err)
	}
}

func signWithDB(t *testing.T, ks *KeySet, in string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(in)+".signed")
	if err := SignPE(context.Background(), in, out, ks.Path(FileDBCert), ks.Path(FileDBKey)); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSignPEOracles: the field's own verifiers accept what SignPE writes,
// and osslsigncode computes the same Authenticode digest as we do.
func TestSignPEOracles(t *testing.T) {
	ks := sharedKeys(t)
	for _, in := range realEFI {
		t.Run(filepath.Base(in), func(t *testing.T) {
			needFile(t, in)
			out := signWithDB(t, ks, in)
			signed := readFile(t, out)

			if err := VerifyPE(signed, []*x509.Certificate{ks.DB}); err != nil {
				t.Errorf("VerifyPE: %v", err)
			}
			run(t, "sbverify", "--cert", ks.Path(FileDBCert), out)

			msg := run(t, "osslsigncode", "verify", "-in", out, "-CAfile", ks.Path(FileDBCert))
			digest := must(AuthenticodeDigest(signed, crypto.SHA256))(t)
			calc := regexp.MustCompile(`Calculated message digest\s*:\s*([0-9A-F]+)`).FindStringSubmatch(msg)
			if calc == nil || !strings.EqualFold(calc[1], hexs(digest)) {
				t.Errorf("osslsigncode digest %v, ours %x\n%s", calc, digest, msg)
			}
			if strings.Contains(msg, "MISMATCH") || strings.Contains(msg, "invalid PE checksum") {
				t.Errorf("osslsigncode reports a mismatch:\n%s", msg)
			}
			// The oracles do say no: the PK certificate did not sign this.
			runFails(t, "sbverify", "--cert", ks.Path(FilePKCert), out)
		})
	}
}

// TestSignPEDeterministic: same input and key, byte-identical output, even
// across a clock tick (a signingTime attribute would break this).
func TestSignPEDeterministic(t *testing.T) {
	ks := sharedKeys(t)
	in := realEFI[0]
	needFile(t, in)
	a := readFile(t, signWithDB(t, ks, in))
	time.Sleep(1100 * time.Millisecond)
	b := readFile(t, signWithDB(t, ks, in))
	if !bytes.Equal(a, b) {
		t.Fatal("two signatures of the same image differ")
	}
	// Re-signing a signed image replaces the signature: same bytes again.
	c := must(SignPEImage(a, ks.DB, must(ReadPrivateKey(ks.Path(FileDBKey)))(t)))(t)
	if !bytes.Equal(a, c) {
		t.Error("re-signing a signed image changed it")
	}
}

func TestSignPERefusesOverwrite(t *testing.T) {
	ks := sharedKeys(t)
	in := realEFI[0]
	needFile(t, in)
	out := filepath.Join(t.TempDir(), "out.efi")
	if err := os.WriteFile(out, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := SignPE(context.Background(), in, out, ks.Path(FileDBCert), ks.Path(FileDBKey))
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), out) {
		t.Errorf("err = %v, want ErrExists naming %s", err, out)
	}
	if got := readFile(t, out); string(got) != "precious" {
		t.Error("existing output was changed")
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

// TestVerifyPERejects: each way an image can fail to be trusted gets its
// own error class.
func TestVerifyPERejects(t *testing.T) {
	ks := sharedKeys(t)
	in := realEFI[0]
	needFile(t, in)
	unsigned := readFile(t, in)
	signed := readFile(t, signWithDB(t, ks, in))
	other := otherSigner(t)
	byOther := must(SignPEImage(unsigned, other.cert, other.key))(t)

	l := must(parsePE(signed))(t)
	flipped := bytes.Clone(signed)
	flipped[l.sections[0].off+100] ^= 0x01

	sigFlip := bytes.Clone(signed)
	sigFlip[len(sigFlip)-64] ^= 0x01 // inside the RSA signature (before padding)

	tests := []struct {
		name  string
		pe    []byte
		roots []*x509.Certificate
		want  error
	}{
		{"unsigned", unsigned, []*x509.Certificate{ks.DB}, ErrNotSigned},
		{"signed by another key", byOther, []*x509.Certificate{ks.DB}, ErrUntrusted},
		{"no roots", signed, nil, ErrUntrusted},
		{"PK is not db", signed, []*x509.Certificate{ks.PK, ks.KEK}, ErrUntrusted},
		{"byte flipped in a section", flipped, []*x509.Certificate{ks.DB}, ErrDigestMismatch},
		{"byte flipped in the signature", sigFlip, []*x509.Certificate{ks.DB}, ErrBadSignature},
		{"not a PE", []byte("hello"), []*x509.Certificate{ks.DB}, ErrMalformedPE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyPE(tc.pe, tc.roots)
			if !errors.Is(err, tc.want) {
				t.Errorf("VerifyPE = %v, want %v", err, tc.want)
			}
		})
	}
	// The other key's image is fine when its own certificate is trusted.
	if err := VerifyPE(byOther, []*x509.Certificate{other.cert}); err != nil {
		t.Errorf("VerifyPE with the right root: %v", err)
	}
}

// TestVerifyPEAcceptsSbsign: VerifyPE reads signatures made by another
// signer (sbsign, with its signingTime and S/MIME capabilities), including
// a second appended signature.
func TestVerifyPEAcceptsSbsign(t *testing.T) {
	ks := sharedKeys(t)
	in := realEFI[0]
	needFile(t, in)
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one.efi"), filepath.Join(dir, "two.efi")
	other := otherSigner(t)
	otherCert, otherKey := filepath.Join(dir, "other.crt"), filepath.Join(dir, "other.key")
	os.WriteFile(otherCert, encodeCertPEM(other.cert), 0o644)
	os.WriteFile(otherKey, must(encodeKeyPEM(other.key))(t), 0o600)

	run(t, "sbsign", "--key", otherKey, "--cert", otherCert, "--output", one, in)
	run(t, "sbsign", "--key", ks.Path(FileDBKey), "--cert", ks.Path(FileDBCert), "--output", two, one)
	if err := VerifyPE(readFile(t, one), []*x509.Certificate{other.cert}); err != nil {
		t.Errorf("sbsign-signed: %v", err)
	}
	if err := VerifyPE(readFile(t, two), []*x509.Certificate{ks.DB}); err != nil {
		t.Errorf("second signature by db: %v", err)
	}
	if err := VerifyPE(readFile(t, one), []*x509.Certificate{ks.DB}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("signed by other only, db trusted: %v, want ErrUntrusted", err)
	}
}

func otherSigner(t *testing.T) issued {
	t.Helper()
	return must(newSecureBootCert("other", "db", time.Now()))(t)
}

func hexs(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

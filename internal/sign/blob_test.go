package sign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBlobSignVerify(t *testing.T) {
	ks := sharedKeys(t)
	key := must(ks.SigningKey())(t)
	data := []byte("manifest: sha256:abc\n")
	sig := must(SignBlob(key, data))(t)
	if again := must(SignBlob(key, data))(t); !bytes.Equal(sig, again) {
		t.Error("SignBlob is not deterministic")
	}
	if err := VerifyBlob(ks.SigningPub, data, sig); err != nil {
		t.Fatalf("VerifyBlob: %v", err)
	}
	otherPub, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	byOther := must(SignBlob(otherKey, data))(t)
	swapLine := func(n int, line string) []byte {
		l := strings.Split(string(sig), "\n")
		l[n] = line
		return []byte(strings.Join(l, "\n"))
	}
	flipped := bytes.Clone(data)
	flipped[0] ^= 1

	tests := []struct {
		name string
		pub  ed25519.PublicKey
		data []byte
		sig  []byte
		want error
	}{
		{"data changed", ks.SigningPub, flipped, sig, ErrBadSignature},
		{"data extended", ks.SigningPub, append(bytes.Clone(data), 'x'), sig, ErrBadSignature},
		{"other key's signature", ks.SigningPub, data, byOther, ErrUntrusted},
		{"key-id rewritten to ours", ks.SigningPub, data, bytes.Replace(byOther, []byte(KeyID(otherPub)), []byte(KeyID(ks.SigningPub)), 1), ErrBadSignature},
		{"wrong verifier", otherPub, data, sig, ErrUntrusted},
		{"empty", ks.SigningPub, data, nil, ErrBadSignature},
		{"no trailing newline", ks.SigningPub, data, bytes.TrimSuffix(sig, []byte("\n")), ErrBadSignature},
		{"bad magic", ks.SigningPub, data, swapLine(0, "kubedos-signature v2"), ErrBadSignature},
		{"other algorithm", ks.SigningPub, data, swapLine(1, "algorithm: rsa"), ErrBadSignature},
		{"short signature", ks.SigningPub, data, swapLine(3, "signature: AAAA"), ErrBadSignature},
		{"not base64", ks.SigningPub, data, swapLine(3, "signature: !!!"), ErrBadSignature},
		{"short public key", ks.SigningPub[:10], data, sig, ErrBadKeyFile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := VerifyBlob(tc.pub, tc.data, tc.sig); !errors.Is(err, tc.want) {
				t.Errorf("VerifyBlob = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := SignBlob(key[:5], data); !errors.Is(err, ErrBadKeyFile) {
		t.Errorf("SignBlob with a short key = %v, want ErrBadKeyFile", err)
	}
}

// TestBlobOpenSSL: the raw signature verifies with openssl against
// signing.pub, so the format hides nothing.
func TestBlobOpenSSL(t *testing.T) {
	needTool(t, "openssl")
	ks := sharedKeys(t)
	data := []byte("darksite Release file\n")
	sig := must(SignBlob(must(ks.SigningKey())(t), data))(t)
	_, raw, err := parseSigFile(sig)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dataF, sigF := filepath.Join(dir, "data"), filepath.Join(dir, "sig")
	os.WriteFile(dataF, data, 0o644)
	os.WriteFile(sigF, raw, 0o644)
	run(t, "openssl", "pkeyutl", "-verify", "-pubin", "-inkey", ks.Path(FileSigningPub), "-rawin", "-in", dataF, "-sigfile", sigF)
}

package lock

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

func TestArchiveKeyStable(t *testing.T) {
	at := time.Unix(fixtureEpoch, 0)
	a, err := archiveEntity(testKey(), at)
	if err != nil {
		t.Fatal(err)
	}
	b, err := archiveEntity(testKey(), at)
	if err != nil {
		t.Fatal(err)
	}
	if fingerprint(a) != fingerprint(b) {
		t.Errorf("fingerprint changes between runs: %s vs %s", fingerprint(a), fingerprint(b))
	}
	ka, _ := publicKeyring(a)
	kb, _ := publicKeyring(b)
	if !bytes.Equal(ka, kb) {
		t.Errorf("public keyring is not byte-stable")
	}
	if a.PrimaryKey.PubKeyAlgo != packet.PubKeyAlgoEdDSA || a.PrimaryKey.Version != 4 {
		t.Errorf("key is algo %d v%d; bookworm's gpgv needs legacy EdDSA (22) v4", a.PrimaryKey.PubKeyAlgo, a.PrimaryKey.Version)
	}
	later, _ := archiveEntity(testKey(), at.Add(time.Second))
	if fingerprint(later) == fingerprint(a) {
		t.Errorf("creation time does not enter the fingerprint")
	}
	ia, ga, _ := signRelease(a, []byte("Origin: x\n"), at)
	ib, gb, _ := signRelease(b, []byte("Origin: x\n"), at)
	if !bytes.Equal(ia, ib) || !bytes.Equal(ga, gb) {
		t.Errorf("signatures are not deterministic")
	}
}

func TestLoadSigningKeyErrors(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	files := map[string][]byte{
		"garbage":  []byte("hello"),
		"ecdsa":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}),
		"wrongpem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ecDER}),
		"badder":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
	}
	tests := map[string]string{
		"garbage": "no PKCS#8", "ecdsa": "not an ed25519 key", "wrongpem": "no PKCS#8", "badder": "asn1", "missing": "no such file",
	}
	for name, want := range tests {
		path := filepath.Join(dir, name)
		if b, ok := files[name]; ok {
			os.WriteFile(path, b, 0o600)
		}
		_, err := LoadSigningKey(path)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadSigningKey(%s) = %v, want an error naming the file and %q", name, err, want)
		}
	}
	k, err := LoadSigningKey(writeTestKey(t, dir))
	if err != nil || !k.Equal(testKey()) {
		t.Errorf("LoadSigningKey(good) = %v", err)
	}
}

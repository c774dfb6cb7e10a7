package hubhost

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/kubedos/kubedos/examples"
)

// FuzzParseHandoff feeds the master's handoff checks arbitrary bytes in
// every field: no panic, and nothing accepted unless it is the real CA,
// a matching key and a manifest signed by the image's key.
func FuzzParseHandoff(f *testing.F) {
	ca := newTestCA(f, "fuzz CA")
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k := NewKeeper(KeeperConfig{Dir: f.TempDir(), CA: ca.Certificate(), ArtifactKey: pub})
	f.Add(ca.certPEM, ca.keyPEM, examples.Local, []byte(`{"kind":"BuildManifest","cluster":"local","buildID":"b"}`), []byte("sig"), []byte{})
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte{}, []byte("kind: ["), []byte("{}"), []byte{}, []byte("x"))
	f.Fuzz(func(t *testing.T, cert, key, spec, manifest, sig, ekCAs []byte) {
		cfg, err := k.parse(bundle{caCert: cert, caKey: key, spec: spec, manifest: manifest, sig: sig, ekCAs: ekCAs})
		if err == nil && (!bytes.Equal(cert, ca.certPEM) || cfg.CA == nil) {
			t.Fatalf("accepted a handoff with another CA certificate")
		}
	})
}

package lock

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ArchiveUserID names the OpenPGP identity of the darksite repo key.
const ArchiveUserID = "kubedos archive signing key"

// LoadSigningKey reads the platform's artifact key: an ed25519 private key
// in a PKCS#8 "PRIVATE KEY" PEM block.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lock: signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("lock: signing key %s: no PKCS#8 \"PRIVATE KEY\" PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("lock: signing key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("lock: signing key %s: %T is not an ed25519 key", path, k)
	}
	return ek, nil
}

// ed25519OID is the curve OID of legacy OpenPGP EdDSA keys (RFC 4880bis §9.2).
var ed25519OID = []byte{0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01}

// archiveEntity wraps the artifact key as an OpenPGP key, created at a
// fixed time so its fingerprint is the same on every build.
//
// It must be a v4 key of the legacy EdDSA algorithm (22): the gpgv that
// bookworm's apt verifies with does not know the newer Ed25519 algorithm
// (27) that go-crypto makes from a crypto/ed25519 key. go-crypto exposes no
// constructor for a legacy key from existing key bytes, so the public-key
// packet is written by hand (RFC 4880 §5.5.2) and parsed back; the secret
// half is then attached through go-crypto's exported types.
func archiveEntity(key ed25519.PrivateKey, created time.Time) (*openpgp.Entity, error) {
	pub := key.Public().(ed25519.PublicKey)
	var body bytes.Buffer
	body.WriteByte(4) // version
	_ = binary.Write(&body, binary.BigEndian, uint32(created.Unix()))
	body.WriteByte(byte(packet.PubKeyAlgoEdDSA))
	body.WriteByte(byte(len(ed25519OID)))
	body.Write(ed25519OID)
	// The point is an MPI of 0x40 ‖ 32 key bytes: 33 bytes, 263 significant bits.
	_ = binary.Write(&body, binary.BigEndian, uint16(8*(1+len(pub))-1))
	body.WriteByte(0x40)
	body.Write(pub)
	pkt := append([]byte{0xC0 | 6, byte(body.Len())}, body.Bytes()...) // new-format tag 6, one-octet length

	p, err := packet.Read(bytes.NewReader(pkt))
	if err != nil {
		return nil, fmt.Errorf("lock: openpgp public key packet: %w", err)
	}
	pk, ok := p.(*packet.PublicKey)
	if !ok {
		return nil, fmt.Errorf("lock: openpgp public key packet parsed as %T", p)
	}
	epub, ok := pk.PublicKey.(*eddsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("lock: openpgp public key is %T, not EdDSA", pk.PublicKey)
	}
	priv := &eddsa.PrivateKey{PublicKey: *epub, D: key.Seed()}
	if err := eddsa.Validate(priv); err != nil {
		return nil, fmt.Errorf("lock: openpgp key: %w", err)
	}
	sk := packet.NewEdDSAPrivateKey(created, priv)
	e := &openpgp.Entity{PrimaryKey: &sk.PublicKey, PrivateKey: sk, Identities: map[string]*openpgp.Identity{}}
	if err := e.AddUserId(ArchiveUserID, "", "", pgpConfig(created)); err != nil {
		return nil, fmt.Errorf("lock: openpgp user id: %w", err)
	}
	return e, nil
}

// pgpConfig makes signatures reproducible: a fixed time, and no random
// salt notation. go-crypto salts v4 signatures by default as a defence
// against fault attacks on the signer; a repository that must be
// byte-identical for the same lock cannot carry random bytes, and ed25519
// itself is deterministic.
func pgpConfig(t time.Time) *packet.Config {
	no := false
	return &packet.Config{
		DefaultHash:                           crypto.SHA512,
		Time:                                  func() time.Time { return t },
		NonDeterministicSignaturesViaNotation: &no,
	}
}

// signRelease returns InRelease (clear-signed) and Release.gpg (armored detached).
func signRelease(e *openpgp.Entity, release []byte, t time.Time) (inRelease, releaseGPG []byte, err error) {
	cfg := pgpConfig(t)
	var in bytes.Buffer
	w, err := clearsign.Encode(&in, e.PrivateKey, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("lock: sign InRelease: %w", err)
	}
	if _, err := w.Write(release); err != nil {
		return nil, nil, fmt.Errorf("lock: sign InRelease: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, nil, fmt.Errorf("lock: sign InRelease: %w", err)
	}
	var det bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&det, e, bytes.NewReader(release), cfg); err != nil {
		return nil, nil, fmt.Errorf("lock: sign Release.gpg: %w", err)
	}
	// Armor ends without a newline; gpgv is happy either way, people are not.
	if !bytes.HasSuffix(det.Bytes(), []byte("\n")) {
		det.WriteByte('\n')
	}
	return in.Bytes(), det.Bytes(), nil
}

// publicKeyring is the binary keyring apt's signed-by option takes.
func publicKeyring(e *openpgp.Entity) ([]byte, error) {
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		return nil, fmt.Errorf("lock: export public key: %w", err)
	}
	return b.Bytes(), nil
}

// fingerprint is the key's OpenPGP v4 fingerprint in upper-case hex, as gpg prints it.
func fingerprint(e *openpgp.Entity) string {
	return strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
}

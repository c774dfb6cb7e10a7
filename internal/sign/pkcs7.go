package sign

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"
)

// PKCS#7 SignedData encoding, by hand on encoding/asn1. The Go PKCS#7
// libraries (smallstep/pkcs7 and its ancestors) can only sign id-data
// content, omit the NULL parameters OpenSSL writes, and always wrap the
// result in a ContentInfo; Authenticode needs SpcIndirectDataContent as
// content and UEFI's authenticated variables want the bare SignedData that
// efitools writes. Verification does use smallstep/pkcs7 (see verifype.go).

var (
	oidData              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidRSAEncryption     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidAttrContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidAttrMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
)

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

// sha256Alg and rsaAlg carry explicit NULL parameters, as OpenSSL writes
// them; byte equality with efitools' output depends on it.
var (
	sha256Alg = algorithmIdentifier{Algorithm: oidSHA256, Parameters: asn1.NullRawValue}
	rsaAlg    = algorithmIdentifier{Algorithm: oidRSAEncryption, Parameters: asn1.NullRawValue}
)

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"optional"` // [0] EXPLICIT, built by explicit0
}

type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

type signerInfo struct {
	Version                   int
	IssuerAndSerial           issuerAndSerial
	DigestAlgorithm           algorithmIdentifier
	AuthenticatedAttributes   asn1.RawValue `asn1:"optional"` // [0] IMPLICIT SET OF
	DigestEncryptionAlgorithm algorithmIdentifier
	EncryptedDigest           []byte
}

type signedData struct {
	Version          int
	DigestAlgorithms []algorithmIdentifier `asn1:"set"`
	ContentInfo      contentInfo
	Certificates     asn1.RawValue `asn1:"optional"` // [0] IMPLICIT SET OF
	SignerInfos      []signerInfo  `asn1:"set"`
}

// explicit0 wraps DER as a constructed [0] element (EXPLICIT or IMPLICIT
// SET OF, depending on what der holds).
func explicit0(der []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: der}
}

// rsaSigner returns key as a signer of RSA PKCS#1 v1.5, the only scheme UEFI
// firmware verifies. PKCS#1 v1.5 is deterministic, which is what makes our
// signatures reproducible.
func rsaSigner(cert *x509.Certificate, key crypto.Signer) error {
	pub, ok := key.Public().(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: key is %T, UEFI firmware verifies only RSA", ErrBadKeyFile, key.Public())
	}
	if !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("%w: private key does not match certificate %q", ErrBadKeyFile, cert.Subject.CommonName)
	}
	return nil
}

// encodeSignedData signs content (already hashed into contentDigest when
// attrs is empty, or covered by the messageDigest inside attrs) and returns
// the DER SignedData. With attrs, the signature is over the DER SET OF the
// attributes, as PKCS#7 requires.
func encodeSignedData(ci contentInfo, cert *x509.Certificate, key crypto.Signer, attrs [][]byte, contentDigest []byte) ([]byte, error) {
	if err := rsaSigner(cert, key); err != nil {
		return nil, err
	}
	si := signerInfo{
		Version:                   1,
		IssuerAndSerial:           issuerAndSerial{Issuer: asn1.RawValue{FullBytes: cert.RawIssuer}, Serial: cert.SerialNumber},
		DigestAlgorithm:           sha256Alg,
		DigestEncryptionAlgorithm: rsaAlg,
	}
	toSign := contentDigest
	if len(attrs) > 0 {
		// DER orders a SET OF by the encodings of its elements.
		sorted := slices.Clone(attrs)
		slices.SortFunc(sorted, bytes.Compare)
		body := bytes.Join(sorted, nil)
		set, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: body})
		if err != nil {
			return nil, fmt.Errorf("encode signed attributes: %w", err)
		}
		h := crypto.SHA256.New()
		h.Write(set)
		toSign = h.Sum(nil)
		si.AuthenticatedAttributes = explicit0(body)
	}
	sig, err := key.Sign(rand.Reader, toSign, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign with %q: %w", cert.Subject.CommonName, err)
	}
	si.EncryptedDigest = sig
	sd := signedData{
		Version:          1,
		DigestAlgorithms: []algorithmIdentifier{sha256Alg},
		ContentInfo:      ci,
		Certificates:     explicit0(cert.Raw),
		SignerInfos:      []signerInfo{si},
	}
	der, err := asn1.Marshal(sd)
	if err != nil {
		return nil, fmt.Errorf("encode SignedData: %w", err)
	}
	return der, nil
}

// attribute encodes one PKCS#9 Attribute: SEQUENCE { type, SET { value } }.
func attribute(typ asn1.ObjectIdentifier, valueDER []byte) ([]byte, error) {
	return asn1.Marshal(struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}{typ, asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: valueDER}})
}

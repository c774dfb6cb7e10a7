package sign

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"
)

// VerifyPE checks a PE image's Authenticode signature as UEFI firmware does
// against db: some signature in the certificate table must cover the
// image's current Authenticode digest and chain to one of roots. As in
// firmware, certificate validity periods are not enforced (edk2 verifies
// with X509_V_FLAG_NO_CHECK_TIME): chains are checked at the moment the
// signer's certificate became valid. Errors wrap ErrNotSigned,
// ErrDigestMismatch, ErrBadSignature, ErrUntrusted or ErrMalformedPE.
func VerifyPE(pe []byte, roots []*x509.Certificate) error {
	l, err := parsePE(pe)
	if err != nil {
		return err
	}
	if l.cert.size == 0 {
		return fmt.Errorf("%w: no certificate table", ErrNotSigned)
	}
	sigs, err := winCertificates(pe[l.cert.off : l.cert.off+l.cert.size])
	if err != nil {
		return err
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: certificate table holds no Authenticode signature", ErrNotSigned)
	}
	pool := x509.NewCertPool() // never nil: a nil pool would mean the system roots
	for _, r := range roots {
		pool.AddCert(r)
	}
	var errs []error
	for i, der := range sigs {
		err := verifyAuthenticode(pe, l, der, pool)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("signature %d: %w", i, err))
	}
	return errors.Join(errs...)
}

// winCertificates returns the PKCS#7 blobs of the Authenticode entries
// (WIN_CERT_TYPE_PKCS_SIGNED_DATA) in a certificate table; each entry is
// padded to 8 bytes.
func winCertificates(table []byte) ([][]byte, error) {
	var out [][]byte
	for off := 0; off+8 <= len(table); {
		n := int(binary.LittleEndian.Uint32(table[off:]))
		rev := binary.LittleEndian.Uint16(table[off+4:])
		typ := binary.LittleEndian.Uint16(table[off+6:])
		if n < 8 || n > len(table)-off {
			return nil, malformed("WIN_CERTIFICATE at table offset %d: length %d out of range", off, n)
		}
		if rev == winCertRevision && typ == winCertTypePKCS {
			out = append(out, table[off+8:off+n])
		}
		off += n + pad8(n)
	}
	return out, nil
}

// verifyAuthenticode checks one signature: content type, digest, PKCS#7
// signature, then trust.
func verifyAuthenticode(pe []byte, l *peLayout, der []byte, pool *x509.CertPool) error {
	// Some signers count their padding in dwLength; keep only the DER.
	var outer asn1.RawValue
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		return fmt.Errorf("%w: PKCS#7: %w", ErrBadSignature, err)
	}
	der = outer.FullBytes
	var ci struct {
		ContentType asn1.ObjectIdentifier
		SignedData  struct {
			Version          int
			DigestAlgorithms asn1.RawValue
			ContentInfo      struct {
				ContentType asn1.ObjectIdentifier
				Content     asn1.RawValue // [0] EXPLICIT SpcIndirectDataContent
			}
			Rest asn1.RawValue // certificates or signerInfos; ignored here
		} `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		return fmt.Errorf("%w: PKCS#7: %w", ErrBadSignature, err)
	}
	if !ci.ContentType.Equal(oidSignedData) || !ci.SignedData.ContentInfo.ContentType.Equal(oidSpcIndirectData) {
		return fmt.Errorf("%w: not Authenticode SignedData (content types %v, %v)",
			ErrBadSignature, ci.ContentType, ci.SignedData.ContentInfo.ContentType)
	}
	content := ci.SignedData.ContentInfo.Content
	if content.Class != asn1.ClassContextSpecific || content.Tag != 0 {
		return fmt.Errorf("%w: SignedData carries no content", ErrBadSignature)
	}
	var idc spcIndirectDataContent
	if _, err := asn1.Unmarshal(content.Bytes, &idc); err != nil {
		return fmt.Errorf("%w: SpcIndirectDataContent: %w", ErrBadSignature, err)
	}
	h, err := hashForOID(idc.MessageDigest.DigestAlgorithm.Algorithm)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	got, err := l.digest(pe, h)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, idc.MessageDigest.Digest) {
		return fmt.Errorf("%w: image %v digest is %x, signature covers %x", ErrDigestMismatch, h, got, idc.MessageDigest.Digest)
	}

	// The cryptography (messageDigest attribute over the content, then the
	// signer's signature over the attributes) is checked by smallstep/pkcs7,
	// a parser independent of our encoder.
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return fmt.Errorf("%w: PKCS#7: %w", ErrBadSignature, err)
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return fmt.Errorf("%w: want exactly one signer with its certificate, got %d signers", ErrBadSignature, len(p7.Signers))
	}
	if err := p7.Verify(); err != nil {
		return fmt.Errorf("%w: signer %q: %w", ErrBadSignature, signer.Subject, err)
	}
	inter := x509.NewCertPool()
	for _, c := range p7.Certificates {
		inter.AddCert(c)
	}
	_, err = signer.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime:   signer.NotBefore,
	})
	if err != nil {
		return fmt.Errorf("%w: signer %q: %w", ErrUntrusted, signer.Subject, err)
	}
	return nil
}

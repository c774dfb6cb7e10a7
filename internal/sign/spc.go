package sign

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"unicode/utf16"
)

// Authenticode's content type and its parts (Microsoft, "Windows Authenticode
// Portable Executable Signature Format").
var (
	oidSpcIndirectData = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 4}
	oidSpcPEImageData  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 15}
	oidSpcSpOpusInfo   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 12}
	oidSHA1            = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA384          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// spcIndirectDataContent ::= SEQUENCE { data SpcAttributeTypeAndOptionalValue,
// messageDigest DigestInfo }.
type spcIndirectDataContent struct {
	Data struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue `asn1:"optional"`
	}
	MessageDigest struct {
		DigestAlgorithm algorithmIdentifier
		Digest          []byte
	}
}

// hashForOID maps the digest algorithms firmware accepts in Authenticode.
func hashForOID(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case oid.Equal(oidSHA1):
		return crypto.SHA1, nil
	case oid.Equal(oidSHA256):
		return crypto.SHA256, nil
	case oid.Equal(oidSHA384):
		return crypto.SHA384, nil
	case oid.Equal(oidSHA512):
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("unsupported digest algorithm %v", oid)
}

// spcPEImageData is the fixed SpcPeImageData every signer writes for a PE:
// no flags, and a file link holding the string "<<<Obsolete>>>" as a
// [0] IMPLICIT BMPString inside [2] and [0] EXPLICIT tags.
func spcPEImageData() ([]byte, error) {
	var bmp []byte
	for _, u := range utf16.Encode([]rune("<<<Obsolete>>>")) {
		bmp = append(bmp, byte(u>>8), byte(u))
	}
	str, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: bmp})
	if err != nil {
		return nil, err
	}
	file, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: str})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		Flags asn1.BitString
		File  asn1.RawValue
	}{asn1.BitString{}, explicit0(file)})
}

// authenticodeSignedData returns the DER ContentInfo of an Authenticode
// signature over a SHA-256 image digest. The signed attributes are
// contentType, messageDigest and an empty SpcSpOpusInfo, and deliberately
// no signingTime, so the same image and key always give the same bytes.
func authenticodeSignedData(digest []byte, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	peData, err := spcPEImageData()
	if err != nil {
		return nil, err
	}
	var idc spcIndirectDataContent
	idc.Data.Type = oidSpcPEImageData
	idc.Data.Value = asn1.RawValue{FullBytes: peData}
	idc.MessageDigest.DigestAlgorithm = sha256Alg
	idc.MessageDigest.Digest = digest
	content, err := asn1.Marshal(idc)
	if err != nil {
		return nil, fmt.Errorf("encode SpcIndirectDataContent: %w", err)
	}
	// PKCS#7 hashes the content's value, without its SEQUENCE tag and length
	// (Authenticode spec, "the messageDigest ... of the content").
	var inner asn1.RawValue
	if _, err := asn1.Unmarshal(content, &inner); err != nil {
		return nil, err
	}
	h := crypto.SHA256.New()
	h.Write(inner.Bytes)

	attrs := make([][]byte, 0, 3)
	for _, a := range []struct {
		typ asn1.ObjectIdentifier
		val any
	}{
		{oidAttrContentType, oidSpcIndirectData},
		{oidAttrMessageDigest, h.Sum(nil)},
		{oidSpcSpOpusInfo, struct{}{}},
	} {
		val, err := asn1.Marshal(a.val)
		if err != nil {
			return nil, err
		}
		der, err := attribute(a.typ, val)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, der)
	}
	sd, err := encodeSignedData(contentInfo{ContentType: oidSpcIndirectData, Content: explicit0(content)}, cert, key, attrs, nil)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(contentInfo{ContentType: oidSignedData, Content: explicit0(sd)})
}

package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SignPE Authenticode-signs the PE image in (an EFI binary: systemd-boot, a
// UKI) with the db certificate and key (PEM files) and writes it to out,
// which must not exist. Signing is done in Go, not by exec'ing sbsign:
// sbsign's OpenSSL adds a signingTime attribute, so its output changes every
// second; ours is byte-identical for the same input and key. The result is
// verified against cert before it is written.
func SignPE(ctx context.Context, in, out string, cert, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sign %s: %w", in, err)
	}
	c, err := ReadCertificate(cert)
	if err != nil {
		return fmt.Errorf("sign %s: %w", in, err)
	}
	k, err := ReadPrivateKey(key)
	if err != nil {
		return fmt.Errorf("sign %s: %w", in, err)
	}
	pe, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	signed, err := SignPEImage(pe, c, k)
	if err != nil {
		return fmt.Errorf("sign %s: %w", in, err)
	}
	if err := VerifyPE(signed, []*x509.Certificate{c}); err != nil {
		return fmt.Errorf("sign %s: own signature does not verify: %w", in, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sign %s: %w", in, err)
	}
	if err := writeNew(out, signed, 0o644); err != nil {
		return fmt.Errorf("sign %s: %w", in, err)
	}
	return nil
}

// SignPEImage returns pe signed with cert and key (RSA). Any existing
// signature is replaced, so the result depends only on the image's content
// and the key. As sbsign does, the image is zero-padded to 8 bytes before
// hashing, since the certificate table must start quadword-aligned.
func SignPEImage(pe []byte, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	l, err := parsePE(pe)
	if err != nil {
		return nil, err
	}
	if l.certDirOff < 0 {
		return nil, malformed("no certificate-table directory entry to point at a signature")
	}
	img := bytes.Clone(pe)
	if l.cert.size > 0 {
		img = img[:l.cert.off]
	}
	clear(img[l.certDirOff : l.certDirOff+8])
	img = append(img, make([]byte, pad8(len(img)))...)
	if l, err = parsePE(img); err != nil {
		return nil, err
	}
	digest, err := l.digest(img, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	p7, err := authenticodeSignedData(digest, cert, key)
	if err != nil {
		return nil, err
	}
	// WIN_CERTIFICATE: dwLength counts header and signature; the table
	// (and the directory entry's size) includes the padding to 8 bytes.
	wc := binary.LittleEndian.AppendUint32(nil, uint32(8+len(p7)))
	wc = binary.LittleEndian.AppendUint16(wc, winCertRevision)
	wc = binary.LittleEndian.AppendUint16(wc, winCertTypePKCS)
	wc = append(wc, p7...)
	wc = append(wc, make([]byte, pad8(len(wc)))...)

	binary.LittleEndian.PutUint32(img[l.certDirOff:], uint32(len(img)))
	binary.LittleEndian.PutUint32(img[l.certDirOff+4:], uint32(len(wc)))
	img = append(img, wc...)
	binary.LittleEndian.PutUint32(img[l.checksumOff:], peChecksum(img, l.checksumOff))
	return img, nil
}

func pad8(n int) int { return (8 - n%8) % 8 }

// peChecksum is the PE optional header CheckSum (the imagehlp algorithm):
// a 16-bit one's-complement-style sum of the file as little-endian words,
// skipping the checksum field, plus the file length. Firmware ignores it,
// but Windows tools and osslsigncode report a mismatch.
func peChecksum(b []byte, checksumOff int) uint32 {
	var sum uint64
	for i := 0; i < len(b); i += 2 {
		if i == checksumOff || i == checksumOff+2 {
			continue
		}
		w := uint64(b[i])
		if i+1 < len(b) {
			w |= uint64(b[i+1]) << 8
		}
		sum += w
		sum = (sum & 0xffff) + (sum >> 16)
	}
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum) + uint32(len(b))
}

// writeNew writes data to path, which must not exist, atomically: a synced
// temporary file beside it is hard-linked into place (link, unlike rename,
// fails rather than replace an existing file).
func writeNew(path string, data []byte, mode os.FileMode) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: %w; refusing to overwrite", path, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("check %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kubedos-sign-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w; refusing to overwrite", path, ErrExists)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncPath(filepath.Dir(path))
}

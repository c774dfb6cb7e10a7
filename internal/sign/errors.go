package sign

import "errors"

// Classes of failure, for errors.Is. Every error this package returns that
// fits one of them wraps it, with the file or field that failed.
var (
	// ErrExists: a key file or output is already there; we never overwrite.
	ErrExists = errors.New("already exists")
	// ErrBadKeyFile: a key, certificate or GUID file is missing, unparsable,
	// of the wrong kind, or does not match its other half.
	ErrBadKeyFile = errors.New("bad key file")
	// ErrMalformedPE: the bytes are not a PE image we can hash safely.
	ErrMalformedPE = errors.New("malformed PE image")
	// ErrNotSigned: the image carries no Authenticode signature.
	ErrNotSigned = errors.New("not signed")
	// ErrDigestMismatch: the image's contents do not match the digest its
	// signature covers (the image was changed after signing).
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrBadSignature: a signature is malformed or does not verify.
	ErrBadSignature = errors.New("bad signature")
	// ErrUntrusted: a signature verifies but its signer does not chain to
	// any trusted root or key.
	ErrUntrusted = errors.New("untrusted signer")
)

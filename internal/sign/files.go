package sign

// Files InitKeys writes, relative to the key directory. Keys are private
// halves (mode 0600); everything else is public and may leave the machine in
// a bundle (see ExportPublic).
const (
	FileOwnerGUID = "secureboot/owner.guid"
	FilePKKey     = "secureboot/PK.key"
	FilePKCert    = "secureboot/PK.crt"
	FilePKESL     = "secureboot/PK.esl"
	FilePKAuth    = "secureboot/PK.auth"
	FileKEKKey    = "secureboot/KEK.key"
	FileKEKCert   = "secureboot/KEK.crt"
	FileKEKESL    = "secureboot/KEK.esl"
	FileKEKAuth   = "secureboot/KEK.auth"
	FileDBKey     = "secureboot/db.key"
	FileDBCert    = "secureboot/db.crt"
	FileDBESL     = "secureboot/db.esl"
	FileDBAuth    = "secureboot/db.auth"

	FileSigningKey = "artifact/signing.key"
	FileSigningPub = "artifact/signing.pub"
	// The PCR policy key signs the PCR 11 values of each UKI, which is what
	// lets a node's TPM release its state key and the master's CA key
	// (internal/tpmseal). RSA 2048: the TPM verifies it.
	FilePCRPolicyKey = "artifact/pcr-policy.key"
	FilePCRPolicyPub = "artifact/pcr-policy.pub"

	FileCAKey     = "ca/ca.key"
	FileCACert    = "ca/ca.crt"
	FileAdminKey  = "ca/admin.key"
	FileAdminCert = "ca/admin.crt"
)

// keyDirs are the subdirectories of a key directory, each mode 0700.
var keyDirs = []string{"secureboot", "artifact", "ca"}

// privateFiles hold secrets; they never leave the key directory.
var privateFiles = []string{FilePKKey, FileKEKKey, FileDBKey, FileSigningKey, FilePCRPolicyKey, FileCAKey, FileAdminKey}

// publicFiles are safe to copy into bundles.
var publicFiles = []string{
	FileOwnerGUID,
	FilePKCert, FilePKESL, FilePKAuth,
	FileKEKCert, FileKEKESL, FileKEKAuth,
	FileDBCert, FileDBESL, FileDBAuth,
	FileSigningPub, FilePCRPolicyPub,
	FileCACert, FileAdminCert,
}

// PublicFiles lists the public halves of a key directory (relative paths),
// what may leave the machine in a recovery bundle.
func PublicFiles() []string { return append([]string(nil), publicFiles...) }

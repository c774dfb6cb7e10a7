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

	FileCAKey     = "ca/ca.key"
	FileCACert    = "ca/ca.crt"
	FileAdminKey  = "ca/admin.key"
	FileAdminCert = "ca/admin.crt"
)

// keyDirs are the subdirectories of a key directory, each mode 0700.
var keyDirs = []string{"secureboot", "artifact", "ca"}

// privateFiles hold secrets; they never leave the key directory.
var privateFiles = []string{FilePKKey, FileKEKKey, FileDBKey, FileSigningKey, FileCAKey, FileAdminKey}

// publicFiles are safe to copy into bundles.
var publicFiles = []string{
	FileOwnerGUID,
	FilePKCert, FilePKESL, FilePKAuth,
	FileKEKCert, FileKEKESL, FileKEKAuth,
	FileDBCert, FileDBESL, FileDBAuth,
	FileSigningPub,
	FileCACert, FileAdminCert,
}

// PublicFiles lists the public halves of a key directory (relative paths),
// what may leave the machine in a recovery bundle.
func PublicFiles() []string { return append([]string(nil), publicFiles...) }

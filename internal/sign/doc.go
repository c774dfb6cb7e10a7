// Package sign holds the platform's keys and every signature kubedos makes
// or checks: the Secure Boot key ceremony (PK, KEK, db as certificates, EFI
// signature lists and authenticated-variable payloads), Authenticode digests,
// signatures and their verification for EFI binaries, and detached ed25519
// signatures for manifests and the darksite repo.
//
// Everything here is done in Go; nothing is exec'd. sbsign was the obvious
// tool for Authenticode, but OpenSSL stamps a signingTime attribute into
// every signature it makes, so two builds of the same image would differ;
// our signer leaves that attribute out and is byte-for-byte reproducible.
// The tests hold our output against the field's own tools: sbverify and
// osslsigncode for signed images, cert-to-efi-sig-list and sign-efi-sig-list
// (efitools) for signature lists and .auth payloads, openssl for ed25519.
package sign

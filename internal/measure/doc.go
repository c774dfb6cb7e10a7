// Package measure predicts the sha256-bank TPM PCRs 4, 7 and 11 that a kubedos
// node has after booting under OVMF with Secure Boot enforced through our
// signed systemd-boot and a signed UKI built on systemd-stub 252 (bookworm)
// or 257 (trixie), and
// checks a node's TCG2 event log and quoted PCR values against a prediction.
//
// Prediction side (build server):
//
//	PredictPCR4(bootDigest, ukiDigest)        Authenticode digests in load order
//	PredictPCR7(SecureBootVars, authorities)  Secure Boot variables + db entries that verified images
//	PredictPCR11(stub, sections)              UKI sections as that systemd-stub release measures them
//	PCR11AtPhase(stubValue, words...)         systemd-pcrphase extends in the booted system
//	Predict(Inputs) -> Prediction             all of the above, JSON for the manifest
//
// Event-log side (hub):
//
//	ParseEventLog(raw) -> *EventLog           go-attestation parser, sha256 digests
//	(*EventLog).Verify(pcrs)                  exact replay against quoted PCRs (go-attestation)
//	Compare(pred, events, pcrs) -> Phase      every difference, event by event
//
// The event formats below were confirmed byte for byte against the event log
// of a real boot (testdata/proto/eventlog.bin):
//
// PCR 4, written by the firmware:
//   - EV_EFI_ACTION, data "Calling EFI Application from Boot Option" (40 bytes,
//     no NUL), digest sha256 of that string;
//   - EV_SEPARATOR, data 00000000, digest sha256 of the 4 zero bytes;
//   - EV_EFI_BOOT_SERVICES_APPLICATION per image the firmware loads
//     (systemd-boot, then the UKI), digest = Authenticode sha256 of the PE
//     image; the data (UEFI_IMAGE_LOAD_EVENT) holds load addresses and device
//     paths, which are not predicted. The 252 stub hands the kernel over
//     without LoadImage, so the kernel has no event of its own.
//
// PCR 7, written by the firmware:
//   - EV_EFI_VARIABLE_DRIVER_CONFIG for SecureBoot (data 01), PK, KEK, db, dbx
//     (dbx present with zero length when not enrolled), then EV_SEPARATOR;
//   - one EV_EFI_VARIABLE_AUTHORITY per distinct db entry that authorised a
//     loaded image, in first-use order (systemd-boot and the UKI signed by the
//     same db certificate give ONE event). Its variable data is the
//     EFI_SIGNATURE_DATA from db (owner GUID ‖ DER certificate), name "db".
//   - Every digest is sha256 of the whole UEFI_VARIABLE_DATA: VariableName
//     GUID (16 bytes, EFI mixed-endian), UnicodeNameLength u64 LE (in
//     characters), VariableDataLength u64 LE, UnicodeName UTF-16LE without NUL,
//     VariableData. The event data is that same structure.
//
// PCR 11, written by systemd-stub, for each section present and non-empty
// in the release's fixed order (Stub252: .linux .osrel .cmdline .initrd
// .splash .dtb .pcrpkey; Stub257, trixie's, adds .ucode, .uname and .sbat,
// the stub's own SBAT data, so every 257 UKI measures it; .pcrsig is never
// measured; the release is read from the stub's .sdmagic), two EV_IPL events: digest sha256 of the ASCII
// section name with its NUL (".linux\x00"), then digest sha256 of the section
// content, VirtualSize bytes, i.e. exactly the input file without the PE file
// alignment padding. The data of both events is the section name in UTF-16LE
// with a NUL.
//
// After the stub, systemd-pcrphase (252 and 257 alike) extends PCR 11 in the booted
// system with sha256 of a phase word (no NUL) and writes no event-log entry
// for it. In a system with no systemd in the initrd that reaches
// multi-user.target the words are "sysinit" (systemd-pcrphase-sysinit.service,
// After=sysinit.target) and then "ready" (systemd-pcrphase.service, after
// basic.target and remote-fs.target). At shutdown "shutdown" and "final"
// follow. The units only run when the TPM2 is usable and the stub has set the
// StubPcrKernelImage EFI variable (efivarfs must be mounted).
//
// Every PCR starts at 32 zero bytes; extending computes sha256(old ‖ digest).
// Only the sha256 bank is handled.
//
// Event logs are parsed and replayed with go-attestation. The prediction side
// (EDK2's variable events, systemd-stub's section events, EFI signature list
// parsing) is written by hand: no well-kept Go library models them, and
// github.com/foxboron/go-uefi is not reachable from the build.
package measure

// Package upgrade is kubedosd's A/B slot writer (DESIGN.md §4). An upgrade
// arrives as a signed build manifest followed by the role's root, verity
// tree and UKI. Stager spools and checks all of it — the manifest's
// signature against the artifact key in the image, every file's size and
// digest against the manifest, the UKI's Authenticode signature against the
// db certificate and its cmdline against the manifest's root hash — before
// Install writes a byte. Install writes only the slot that is not running,
// in an order where a power cut at any moment leaves a bootable node: the
// entries and UUIDs that could point at the slot are removed first, the
// new UUIDs and the UKI (with tries left) appear only after the slot is
// written and read back. The boot loader's counter does the rest.
package upgrade

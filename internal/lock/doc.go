// Package lock pins every Debian package a kubedos cluster is built from,
// and turns the pins into an offline, signed APT repository.
//
// Resolve asks APT's own solver (apt-get in a private configuration, never
// the host's) for each role's closure and records exact versions, sizes and
// sha256 digests in kubedos.lock. Fetch downloads exactly those files into a
// content-addressed cache, verifying each while it streams, and lays them out
// as the darksite repository that builds install from with no network.
//
// kubedos.lock is JSON, 2-space indented, keys and lists sorted, so the same
// resolution is byte-identical:
//
//	apiVersion, kind          kubedos.io/v1alpha1, Lock
//	suite, mirror, components, architecture
//	sourceDateEpoch           the mirror Release Date, for SOURCE_DATE_EPOCH
//	requestDigest             sha256:<hex> of the spec's package requests
//	packages                  [{name, version, architecture, sha256, size, filename, priority}]
//	roles                     {role: [package names of its whole closure]}
//
// The darksite repository (Repo) is:
//
//	pool/…                                  the .debs at their archive pool paths
//	dists/kubedos/main/binary-<arch>/Packages
//	dists/kubedos/{Release,InRelease,Release.gpg}
//	kubedos-archive-keyring.gpg             binary OpenPGP public key for [signed-by=]
//
// signed with the platform's artifact key wrapped as an OpenPGP EdDSA key.
package lock

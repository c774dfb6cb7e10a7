#!/usr/bin/env bash
# Build the pinned CoreDNS (coredns/, issue 13 §1) reproducibly, cached by
# content outside the clone: the same scheme as scripts/kube-build.sh.
#
# The output is addressed by sha256 over everything that decides its bytes:
# coredns/go.mod, coredns/go.sum, the wrapper main's source (its plugin
# list), `go version`, the target platform and the build flags below. On a
# hit nothing is built: the stored binary's digest is checked and printed. On
# a miss the binary is built into a temporary directory beside the cache
# entry, its digest and module list written, and the directory renamed into
# place, so a stopped build never leaves an entry that looks complete.
#
# Environment:
#   KUBEDOS_COREDNS_CACHE    output cache (default ~/.cache/kubedos/coredns)
#   KUBEDOS_COREDNS_GOCACHE  Go build cache for this module (default
#                            ~/.cache/kubedos/coredns-gocache)
#   COREDNS_NICE             niceness of the compile (default 19)
#   COREDNS_OUT              if set, the binary is also copied there and its
#                            CycloneDX SBOM written to $COREDNS_OUT.cdx.json
#   COREDNS_MODULE           the wrapper module to build (default coredns/);
#                            a recovery bundle's coredns/src with
#                            GOPROXY=file://<bundle>/coredns/proxy rebuilds
#                            offline
# Prints "sha256  path" of the binary as its last line.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mod=$(cd "${COREDNS_MODULE:-$root/coredns}" && pwd)
cache=${KUBEDOS_COREDNS_CACHE:-$HOME/.cache/kubedos/coredns}
gocache=${KUBEDOS_COREDNS_GOCACHE:-$HOME/.cache/kubedos/coredns-gocache}
nice_level=${COREDNS_NICE:-19}

# The release, read from go.mod: CoreDNS's version string is a constant of
# the module (coremain.CoreVersion), so only the SBOM needs it.
ver=$(cd "$mod" && GOFLAGS=-mod=mod go mod edit -json | sed -n '/"Path": "github.com\/coredns\/coredns"/{n;s/.*"Version": "\(.*\)".*/\1/p;q}')
[[ $ver =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
	echo "coredns-build: coredns/go.mod: no github.com/coredns/coredns vX.Y.Z requirement (got '$ver')" >&2
	exit 1
}

export GOFLAGS=-mod=readonly GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$gocache"
export GOOS=${GOOS:-$(go env GOOS)} GOARCH=${GOARCH:-$(go env GOARCH)}
export GOAMD64=${GOAMD64:-v1}

# GitCommit is what upstream's Makefile sets; the module zip has no commit.
ldflags="-buildid= -s -w -X github.com/coredns/coredns/coremain.GitCommit="
flags=(-trimpath -buildvcs=false -ldflags="$ldflags")

# shellcheck source=scripts/lib/cached-go-build.sh
source "$root/scripts/lib/cached-go-build.sh"
cached_go_build coredns "$mod" "$cache" "$nice_level" "${COREDNS_OUT:-}" "$ver" "${flags[@]}"

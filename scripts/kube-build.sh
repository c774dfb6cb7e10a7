#!/usr/bin/env bash
# Build the pinned Kubernetes multicall binary (kube/, issue 13 §1),
# reproducibly, cached by content outside the clone.
#
# The output is addressed by sha256 over everything that decides its bytes:
# kube/go.mod, kube/go.sum, the multicall main's source, `go version`, the
# target platform and the build flags below. On a hit nothing is built: the
# stored binary's digest is checked and printed. On a miss the binary is
# built into a temporary directory beside the cache entry, its digest and
# module list written, and the directory renamed into place, so a stopped
# build never leaves an entry that looks complete.
#
# Environment:
#   KUBEDOS_KUBE_CACHE    output cache (default ~/.cache/kubedos/kube)
#   KUBEDOS_KUBE_GOCACHE  Go build cache for this module (default
#                         ~/.cache/kubedos/kube-gocache; ~3.5 GB, reusable)
#   KUBE_NICE             niceness of the compile (default 19: it is long)
#   KUBE_OUT              if set, the binary is also copied there and its
#                         CycloneDX SBOM written to $KUBE_OUT.cdx.json
#   KUBE_MODULE           the wrapper module to build (default kube/ here);
#                         a recovery bundle's kube/src with
#                         GOPROXY=file://<bundle>/kube/proxy rebuilds offline
# Prints "sha256  path" of the binary as its last line.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mod=$(cd "${KUBE_MODULE:-$root/kube}" && pwd)
cache=${KUBEDOS_KUBE_CACHE:-$HOME/.cache/kubedos/kube}
gocache=${KUBEDOS_KUBE_GOCACHE:-$HOME/.cache/kubedos/kube-gocache}
nice_level=${KUBE_NICE:-19}

# The release, read from go.mod so the version string cannot drift from
# what is linked. buildDate is the release's publication time on the
# module proxy (its .info), not the clock: the same for every rebuild.
kver=$(cd "$mod" && GOFLAGS=-mod=mod go mod edit -json | sed -n '/"Path": "k8s.io\/kubernetes"/{n;s/.*"Version": "\(.*\)".*/\1/p;q}')
[[ $kver =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || {
	echo "kube-build: kube/go.mod: no k8s.io/kubernetes vX.Y.Z requirement (got '$kver')" >&2
	exit 1
}
kmajor=${BASH_REMATCH[1]} kminor=${BASH_REMATCH[2]}
build_date=2026-04-15T18:01:22Z # v1.35.4 on the Go module proxy; change with the pin
[[ $kver == v1.35.4 ]] || {
	echo "kube-build: kube/go.mod pins $kver but build_date is v1.35.4's; update both" >&2
	exit 1
}

export GOFLAGS=-mod=readonly GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$gocache"
export GOOS=${GOOS:-$(go env GOOS)} GOARCH=${GOARCH:-$(go env GOARCH)}
export GOAMD64=${GOAMD64:-v1}

ldflags="-buildid= -s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=$kver -X $p.gitMajor=$kmajor -X $p.gitMinor=$kminor"
	ldflags+=" -X $p.gitTreeState=archive -X $p.gitCommit= -X $p.buildDate=$build_date"
done
# Tags as upstream's release build (hack/lib/golang.sh, non-debug).
tags=selinux,notest,grpcnotrace
flags=(-trimpath -buildvcs=false -tags="$tags" -ldflags="$ldflags")

# shellcheck source=scripts/lib/cached-go-build.sh
source "$root/scripts/lib/cached-go-build.sh"
cached_go_build kube "$mod" "$cache" "$nice_level" "${KUBE_OUT:-}" "$kver" "${flags[@]}"

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

key=$(
	{
		printf 'kube-build 1\n'
		go version
		printf '%s\n' "GOOS=$GOOS GOARCH=$GOARCH GOAMD64=$GOAMD64 CGO_ENABLED=$CGO_ENABLED GOFLAGS=$GOFLAGS"
		printf '%s\n' "${flags[@]}"
		for f in go.mod go.sum $(cd "$mod" && find cmd -type f -name '*.go' | LC_ALL=C sort); do
			printf 'file %s\n' "$f"
			sha256sum <"$mod/$f"
		done
	} | sha256sum | cut -c1-64
)
entry="$cache/$key"
bin="$entry/kube"

if [[ -d $entry ]]; then
	want=$(cut -c1-64 "$entry/kube.sha256")
	got=$(sha256sum "$bin" | cut -c1-64)
	if [[ $want != "$got" ]]; then
		echo "kube-build: cache entry $entry: kube is $got, recorded $want; remove the entry to rebuild" >&2
		exit 1
	fi
	echo "kube-build: cache hit $key" >&2
else
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/.tmp-$key.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	echo "kube-build: building $kver ($key), GOCACHE=$gocache" >&2
	start=$(date +%s)
	(cd "$mod" && nice -n "$nice_level" go build "${flags[@]}" -o "$tmp/kube" ./cmd/kube)
	echo "kube-build: built in $(($(date +%s) - start)) s" >&2
	(cd "$tmp" && go version -m kube >kube.modules && sha256sum kube >kube.sha256)
	chmod 755 "$tmp" # mktemp made it 0700
	sync -f "$tmp/kube" 2>/dev/null || sync
	if ! mv -T "$tmp" "$entry" 2>/dev/null; then
		# Another build won the race; its entry has the same content key.
		rm -rf "$tmp"
	fi
	trap - EXIT
	got=$(cut -c1-64 "$entry/kube.sha256")
fi

if [[ -n ${KUBE_OUT:-} ]]; then
	KUBE_OUT=$(realpath -m "$KUBE_OUT")
	mkdir -p "$(dirname "$KUBE_OUT")"
	cp "$bin" "$KUBE_OUT.tmp" && mv -f "$KUBE_OUT.tmp" "$KUBE_OUT"
	# The SBOM is made here, not cached: it depends on the generator too.
	(cd "$root" && GOCACHE=$(env -u GOCACHE go env GOCACHE) go run ./scripts/gosbom -o "$KUBE_OUT.cdx.json" \
		-modcache "$(go env GOMODCACHE)" -version "$kver" "$KUBE_OUT")
fi
echo "$got  $bin"

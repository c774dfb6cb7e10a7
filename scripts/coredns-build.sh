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
#   COREDNS_MODULE           the wrapper module to build (default coredns/)
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

key=$(
	{
		printf 'coredns-build 1\n'
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
bin="$entry/coredns"

if [[ -d $entry ]]; then
	want=$(cut -c1-64 "$entry/coredns.sha256")
	got=$(sha256sum "$bin" | cut -c1-64)
	if [[ $want != "$got" ]]; then
		echo "coredns-build: cache entry $entry: coredns is $got, recorded $want; remove the entry to rebuild" >&2
		exit 1
	fi
	echo "coredns-build: cache hit $key" >&2
else
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/.tmp-$key.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	echo "coredns-build: building $ver ($key), GOCACHE=$gocache" >&2
	start=$(date +%s)
	(cd "$mod" && nice -n "$nice_level" go build "${flags[@]}" -o "$tmp/coredns" ./cmd/coredns)
	echo "coredns-build: built in $(($(date +%s) - start)) s" >&2
	(cd "$tmp" && go version -m coredns >coredns.modules && sha256sum coredns >coredns.sha256)
	chmod 755 "$tmp" # mktemp made it 0700
	sync -f "$tmp/coredns" 2>/dev/null || sync
	if ! mv -T "$tmp" "$entry" 2>/dev/null; then
		# Another build won the race; its entry has the same content key.
		rm -rf "$tmp"
	fi
	trap - EXIT
	got=$(cut -c1-64 "$entry/coredns.sha256")
fi

if [[ -n ${COREDNS_OUT:-} ]]; then
	COREDNS_OUT=$(realpath -m "$COREDNS_OUT")
	mkdir -p "$(dirname "$COREDNS_OUT")"
	cp "$bin" "$COREDNS_OUT.tmp" && mv -f "$COREDNS_OUT.tmp" "$COREDNS_OUT"
	# The SBOM is made here, not cached: it depends on the generator too.
	(cd "$root" && GOCACHE=$(env -u GOCACHE go env GOCACHE) go run ./scripts/gosbom -o "$COREDNS_OUT.cdx.json" \
		-modcache "$(go env GOMODCACHE)" -version "$ver" "$COREDNS_OUT")
fi
echo "$got  $bin"

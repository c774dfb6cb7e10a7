# Sourced by scripts/kube-build.sh and scripts/coredns-build.sh: build one
# binary of a pinned wrapper module reproducibly, cached by content.
#
# cached_go_build NAME MODULE_DIR CACHE_DIR NICE OUT VERSION FLAGS...
#   NAME     the binary (./cmd/NAME in MODULE_DIR) and the cache's tag
#   OUT      if not empty, the binary is also copied there and its
#            CycloneDX SBOM written to OUT.cdx.json
#   FLAGS    go build flags; with go version, the target platform,
#            go.mod, go.sum and cmd/'s sources they make the content key
# The caller exports GOFLAGS, GOTOOLCHAIN, CGO_ENABLED, GOCACHE, GOOS,
# GOARCH and GOAMD64. On a hit nothing is built: the stored binary's digest
# is checked. On a miss the binary is built into a temporary directory
# beside the entry, its digest and module list written, and the directory
# renamed into place, so a stopped build never leaves an entry that looks
# complete. Prints "sha256  path" of the binary as its last line.
cached_go_build() {
	local name=$1 mod=$2 cache=$3 nice_level=$4 out=$5 ver=$6
	shift 6
	local flags=("$@") root key entry bin want got tmp start
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	key=$(
		{
			printf '%s-build 1\n' "$name"
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
	bin="$entry/$name"

	if [[ -d $entry ]]; then
		want=$(cut -c1-64 "$entry/$name.sha256")
		got=$(sha256sum "$bin" | cut -c1-64)
		if [[ $want != "$got" ]]; then
			echo "$name-build: cache entry $entry: $name is $got, recorded $want; remove the entry to rebuild" >&2
			return 1
		fi
		echo "$name-build: cache hit $key" >&2
	else
		mkdir -p "$cache"
		tmp=$(mktemp -d "$cache/.tmp-$key.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		echo "$name-build: building $ver ($key), GOCACHE=$GOCACHE" >&2
		start=$(date +%s)
		(cd "$mod" && nice -n "$nice_level" go build "${flags[@]}" -o "$tmp/$name" "./cmd/$name")
		echo "$name-build: built in $(($(date +%s) - start)) s" >&2
		(cd "$tmp" && go version -m "$name" >"$name.modules" && sha256sum "$name" >"$name.sha256")
		chmod 755 "$tmp" # mktemp made it 0700
		sync -f "$tmp/$name" 2>/dev/null || sync
		if ! mv -T "$tmp" "$entry" 2>/dev/null; then
			# Another build won the race; its entry has the same content key.
			rm -rf "$tmp"
		fi
		trap - EXIT
		got=$(cut -c1-64 "$entry/$name.sha256")
	fi

	if [[ -n $out ]]; then
		out=$(realpath -m "$out")
		mkdir -p "$(dirname "$out")"
		cp "$bin" "$out.tmp" && mv -f "$out.tmp" "$out"
		# The SBOM is made here, not cached: it depends on the generator too.
		(cd "$root" && GOCACHE=$(env -u GOCACHE go env GOCACHE) go run ./scripts/gosbom -o "$out.cdx.json" \
			-modcache "$(go env GOMODCACHE)" -version "$ver" "$out")
	fi
	echo "$got  $bin"
}

#!/usr/bin/env bash
# What `make integration` runs: the tests defined in files built only with
# the integration tag, in their packages alone. `make unit` already ran
# every other test (with -race); running them again under the tag cost CI
# minutes and told nothing new.
#   integration-tests.sh pkgs   the packages, as ./dir
#   integration-tests.sh run    a -run pattern naming those tests
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(grep -rl '^//go:build integration' --include='*_test.go' internal cmd | LC_ALL=C sort)
[[ ${#files[@]} -gt 0 ]] || { echo "integration-tests: no file carries //go:build integration" >&2; exit 1; }
case ${1:-} in
pkgs) for f in "${files[@]}"; do echo "./$(dirname "$f")"; done | LC_ALL=C sort -u | paste -sd' ' ;;
run)
	names=$(sed -n 's/^func \(Test[A-Za-z0-9_]*\)(t \*testing\.T).*/\1/p' "${files[@]}" | LC_ALL=C sort -u | paste -sd'|')
	[[ -n $names ]] || { echo "integration-tests: no Test function in ${files[*]}" >&2; exit 1; }
	echo "^($names)\$"
	;;
*) echo "usage: integration-tests.sh pkgs|run" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The main job on the local default. Today: validate both examples and plan
# the local cluster. Later stages grow this into build-and-boot.
set -euo pipefail
cd "$(dirname "$0")/.."
k=bin/kubedos
$k version
echo
echo "== validate the examples"
$k spec validate examples/reference.yaml
$k spec validate examples/local.yaml
echo
echo "== a spec with mistakes: every problem at once, with line:column"
$k spec validate internal/spec/testdata/five-mistakes.yaml || echo "(exit status $? — expected)"
echo
echo "== convergence plan of the local cluster"
$k plan examples/local.yaml
echo
echo "demo: ok. Next: '$k plan examples/reference.yaml -o dot | dot -Tsvg > plan.svg'"

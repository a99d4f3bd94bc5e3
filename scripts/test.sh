#!/usr/bin/env bash
# The whole test suite, from a fresh machine: setup, compile, then every test file against the
# real components (runc, overlayfs, skopeo, podman, docker-registry, qemu). A missing
# prerequisite fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
if [ ${#files[@]} -eq 0 ]; then echo "no test files found" >&2; exit 1; fi
# One file at a time: the tests mount overlays, start registries and boot VMs on 2 cores.
# A hung test fails after 10 minutes instead of eating the CI budget.
exec node --test --test-concurrency=1 --test-timeout=600000 --test-force-exit "$@" "${files[@]}"

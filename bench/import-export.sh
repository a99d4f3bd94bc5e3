#!/usr/bin/env bash
# Import/save/load/export throughput of a ~200 MB rootfs, drydock vs podman. Args: [runs] [sizeMB]
set -euo pipefail
cd "$(dirname "$0")/.."
exec node --import tsx bench/import-export.ts "$@"

#!/usr/bin/env bash
# The README's main job, end to end and offline: make the busybox base image from the host's
# busybox-static, build examples/hello on it, run it with a published port, fetch the page.
#
#   npm run demo                      # uses a throw-away store under /tmp
#   DRYDOCK_ROOT=~/.local/share/drydock PORT=8081 bash scripts/demo.sh
#   DRYDOCK="node --import tsx src/cli/main.ts" bash scripts/demo.sh   # from source, no build
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${DRYDOCK:-}" ]; then
  # A fresh machine gets its packages, npm dependencies and the compiled CLI here.
  bash scripts/setup.sh
  DRYDOCK="node bin/drydock.js"
fi
read -r -a drydock <<<"$DRYDOCK"

if [ -z "${DRYDOCK_ROOT:-}" ]; then
  DRYDOCK_ROOT=$(mktemp -d /tmp/drydock-demo.XXXXXX)
  own_root=1
fi
export DRYDOCK_ROOT
PORT=${PORT:-8080}
NAME=drydock-demo-hello-$$

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
cleanup() {
  "${drydock[@]}" rm -f "$NAME" >/dev/null 2>&1 || true
  if [ -n "${own_root:-}" ]; then rm -rf "$DRYDOCK_ROOT"; fi
}
trap cleanup EXIT

step drydock mkimage busybox -t busybox:latest
"${drydock[@]}" mkimage busybox -t busybox:latest

step drydock images
"${drydock[@]}" images

step drydock build -t hello:latest examples/hello
"${drydock[@]}" build -t hello:latest examples/hello

step drydock run -d --name "$NAME" -p "127.0.0.1:$PORT:8080" hello:latest
"${drydock[@]}" run -d --name "$NAME" -p "127.0.0.1:$PORT:8080" hello:latest

step curl "http://127.0.0.1:$PORT/"
for _ in $(seq 1 50); do
  if page=$(curl -fsS "http://127.0.0.1:$PORT/" 2>/dev/null); then break; fi
  sleep 0.2
done
if ! grep -q 'Hello from drydock' <<<"${page:-}"; then
  echo "demo: the page did not come up on port $PORT" >&2
  "${drydock[@]}" logs "$NAME" >&2 || true
  exit 1
fi
printf '%s\n' "$page"
curl -fsS "http://127.0.0.1:$PORT/build.txt"

step drydock logs "$NAME"
"${drydock[@]}" logs "$NAME"

printf '\ndemo: OK\n'

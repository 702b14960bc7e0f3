# shellcheck shell=bash
# Shared by kind-up.sh and kind-down.sh (sourced): logging, the tool cache on PATH, and the
# service list of this checkout.

if [[ -n "${STOCKPIPE_CACHE:-}" ]]; then CACHE="$STOCKPIPE_CACHE"
elif mkdir -p /var/cache/stockpipe 2>/dev/null && [[ -w /var/cache/stockpipe ]]; then CACHE=/var/cache/stockpipe
else CACHE="${HOME:-/tmp}/.cache/stockpipe"; fi
BIN="$CACHE/bin"
mkdir -p "$BIN"
export PATH="$BIN:$PATH"

log() { printf 'kind: %s\n' "$*" >&2; }
die() { printf 'kind: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# run CMD...: runs it, or prints it with DRY_RUN=1.
run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

# The services whose package is in this checkout (services/<name>/src/stockpipe/<name>/__main__.py).
services() {
  local f
  for f in "$ROOT"/services/*/src/stockpipe/*/__main__.py; do
    [[ -f "$f" ]] && basename "$(dirname "$f")"
  done
}

# The images' version: libs/common/pyproject.toml's.
version() {
  sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/libs/common/pyproject.toml" | head -n 1
}

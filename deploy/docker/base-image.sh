#!/usr/bin/env bash
# Make the base image of every stockpipe image, stockpipe-base:bookworm, from Debian's own
# packages: `debootstrap --variant=minbase bookworm` into a temporary directory, then
# `docker import`. No image registry is needed (or contacted): only the Debian mirror.
#
# Usage: deploy/docker/base-image.sh [--force]
#   Skips when the tag already exists (unless --force). Needs root (debootstrap), docker
#   and debootstrap (apt-get install -y debootstrap).
#
# Environment:
#   BASE_IMAGE   tag to create (default stockpipe-base:bookworm)
#   SUITE        Debian suite (default bookworm: its python3 is 3.11, as the project's)
#   MIRROR       Debian mirror for debootstrap (default: the first Debian mirror in this
#                machine's /etc/apt/sources.list*, else debootstrap's own default)
#
# The image gets the same apt sources as this machine (read at run time from
# /etc/apt/sources.list*, so bookworm-updates and bookworm-security come along when the
# machine has them) and nothing else: no package lists, no caches, no docs, no man pages.
set -euo pipefail

TAG="${BASE_IMAGE:-stockpipe-base:bookworm}"
SUITE="${SUITE:-bookworm}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { printf 'base-image: %s\n' "$*" >&2; }
die() { printf 'base-image: error: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "docker not found (apt-get install -y docker.io)"
docker info >/dev/null 2>&1 || die "cannot reach the Docker daemon; start it, e.g.: dockerd --bridge=none --iptables=false > /tmp/dockerd.log 2>&1 &"

if [[ "$FORCE" == 0 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG exists; nothing to do (--force rebuilds it)"
  exit 0
fi

command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install -y debootstrap)"
[[ "$(id -u)" == 0 ]] || die "debootstrap needs root"

# The machine's first Debian mirror (one-line or deb822 format), read now, never stored here.
machine_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -r "$f" ]] || continue
    awk '
      /^[[:space:]]*#/ { next }
      $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; exit } }
      $1 == "URIs:" { print $2; exit }
    ' "$f"
  done | grep -v -- '-security' | head -n 1
}

MIRROR="${MIRROR:-$(machine_mirror || true)}"
t0="$(date +%s)"
ROOT="$(mktemp -d /tmp/stockpipe-rootfs.XXXXXX)"
trap 'rm -rf --one-file-system -- "$ROOT"' EXIT

log "debootstrap --variant=minbase $SUITE ${MIRROR:-<debootstrap default mirror>} (takes a minute or two)"
if ! debootstrap --variant=minbase "$SUITE" "$ROOT" ${MIRROR:+"$MIRROR"} >"$ROOT.log" 2>&1; then
  tail -n 30 "$ROOT.log" >&2
  rm -f -- "$ROOT.log"
  die "debootstrap failed"
fi
rm -f -- "$ROOT.log"

# The machine's apt sources (updates and security included when it has them).
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null || [[ -s /etc/apt/sources.list ]]; then
  rm -f -- "$ROOT/etc/apt/sources.list"
  [[ -s /etc/apt/sources.list ]] && cp -- /etc/apt/sources.list "$ROOT/etc/apt/sources.list"
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -r "$f" ]] && cp -- "$f" "$ROOT/etc/apt/sources.list.d/"
  done
fi

# Minimal cleanup, the way Debian's official images do it: no package lists, no caches,
# no logs, no docs/man/locales of packages installed later (dpkg path excludes), and apt
# that keeps no .deb files and installs no recommends.
rm -rf -- "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
  "$ROOT"/var/log/* "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* \
  "$ROOT"/usr/share/info/*
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/excludes" <<'CFG'
# stockpipe-base: no documentation in images
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
cat >"$ROOT/etc/apt/apt.conf.d/90stockpipe-image" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Binary::apt::APT::Keep-Downloaded-Packages "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
CFG
# Name resolution comes from the container runtime, not from this machine.
: >"$ROOT/etc/resolv.conf"
rm -f -- "$ROOT/etc/hostname"

log "importing $TAG"
tar --numeric-owner -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  --message "debootstrap --variant=minbase $SUITE" - "$TAG" >/dev/null
log "$TAG ready in $(( $(date +%s) - t0 )) s ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"

#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Install what the local platform needs and is missing, so `make run` / `make test` work
# on a fresh Debian or Ubuntu machine: a Java >= 17 runtime (Kafka 4), Maven (fetches the
# Kafka jars), the PostgreSQL server, kcat (Kafka readiness checks, debugging), make,
# Chromium and chromium-driver (the dashboard's browser tests),
# and Python's venv module (the Makefile's .venv). Then fetch the Kafka jars, so nothing is
# left to download later.
#
# Fast and quiet when everything is there (no apt-get update, no Maven run). Uses sudo
# when not root. Exit 0 when all is in place; 1 when something is missing and cannot be
# installed here (a non-apt system: it prints what to install), or an install failed.
#
# Note: on Debian/Ubuntu the postgresql package creates and starts a system-wide
# cluster on port 5432. The project never uses it (infra.sh runs its own cluster on a
# free port), so it is left as the package set it up.
set -euo pipefail

LOCAL_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# postgres.sh for pg_bindir (where the server binaries are); it sources common.sh.
# shellcheck source=postgres.sh
source "$LOCAL_DIR/postgres.sh"
LOG_TAG=install-deps

# Parallel lists: the Debian package that provides a missing piece, and what to tell a
# person on a system without apt.
missing_pkgs=()
missing_what=()

need() {
  missing_pkgs+=("$1")
  missing_what+=("$2")
}

check_all() {
  missing_pkgs=()
  missing_what=()
  find_java >/dev/null || need JAVA "a Java 17 (or newer) runtime, e.g. OpenJDK 17 JRE"
  have mvn || need maven "Apache Maven 3.6+ (mvn)"
  pg_bindir >/dev/null || need postgresql "the PostgreSQL 15 (or newer) server (initdb, pg_ctl, postgres)"
  have kcat || need kcat "kcat (formerly kafkacat)"
  have make || need make "GNU make"
  # Headless Chromium and its WebDriver: the dashboard's browser tests drive them.
  have chromium || need chromium "Chromium (the dashboard's browser tests)"
  have chromedriver || need chromium-driver "chromedriver for Chromium (the dashboard's browser tests)"
  # The analytics package has a C extension: a C compiler and Python's headers build it.
  have gcc || need gcc "a C compiler (gcc) for the analytics kernel"
  python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    >/dev/null 2>&1 || need python3-dev "Python's C headers (python3-dev) for the analytics kernel"
  # Debian splits venv's bootstrap (ensurepip) into python3-venv; without it
  # `python3 -m venv` fails.
  if ! have python3; then
    need python3-venv "Python 3.11+ with the venv module"
  elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    need python3-venv "Python's venv module (python3-venv)"
  fi
}

# The Java package this distribution has: 17 where it exists (what Kafka 4.1 is tested
# on), else 21 (Debian 13 dropped 17), else the distribution's default.
pick_java_pkg() {
  local p
  for p in openjdk-17-jre-headless openjdk-21-jre-headless default-jre-headless; do
    if apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      printf '%s\n' "$p"
      return 0
    fi
  done
  printf '%s\n' default-jre-headless
}

main() {
  check_all
  if (( ${#missing_pkgs[@]} > 0 )); then
    if ! have apt-get; then
      log "this is not a Debian/Ubuntu system; please install:"
      printf '  - %s\n' "${missing_what[@]}" >&2
      exit 1
    fi
    local -a sudo=()
    if (( EUID != 0 )); then
      have sudo || die "not root and no sudo: as root, run: apt-get install ${missing_pkgs[*]}"
      sudo=(sudo)
    fi
    # Wait for a dpkg lock held by another apt run (up to 10 min) instead of failing.
    local -a apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
    log "installing: ${missing_what[*]}"
    # The package lists are refreshed only now that something must be installed.
    "${apt[@]}" update -qq
    local i
    for i in "${!missing_pkgs[@]}"; do
      if [[ "${missing_pkgs[$i]}" == JAVA ]]; then
        missing_pkgs[i]="$(pick_java_pkg)"
      fi
    done
    "${apt[@]}" install -y -qq --no-install-recommends "${missing_pkgs[@]}"
    check_all
    if (( ${#missing_pkgs[@]} > 0 )); then
      die "still missing after apt-get install: ${missing_what[*]}"
    fi
    log "system packages installed"
  fi
  "$LOCAL_DIR/kafka.sh" fetch
}

main "$@"

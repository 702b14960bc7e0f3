#!/usr/bin/env bash
# Debian packages the single-node cluster needs beside the Go-built binaries (build.sh):
# containerd, runc, the CNI plugins, iptables + conntrack (kube-proxy), and docker.io +
# debootstrap (the images). Installs only what is missing; needs root.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have containerd || need+=(containerd)
have runc || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
have iptables || need+=(iptables)
have conntrack || need+=(conntrack)
have dockerd || need+=(docker.io)
have debootstrap || need+=(debootstrap)
have openssl || need+=(openssl)
have go || { echo "install-deps: go not found (the cluster is built from Go modules; Go >= 1.24 needed)" >&2; exit 1; }
((${#need[@]})) || exit 0
echo "install-deps: apt-get install ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq -o DPkg::Lock::Timeout=600
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null

# Versions of the single-node cluster `make cluster-test` builds (sourced by the scripts here).
# Kubernetes stays on 1.34: it is the last release that runs on cgroup v1 with Debian 12's
# containerd 1.6 (see deploy/cluster/README.md).
K8S_VERSION=v1.34.4
K8S_STAGING_VERSION=v0.34.4
ETCD_VERSION=v3.6.16
COREDNS_VERSION=v1.12.4
HELM_VERSION=v3.22.0
CRICTL_VERSION=v1.34.0
# Where builds and their Go caches live: outside the clone, so CI on the same machine is warm.
K8S_CACHE="${STOCKPIPE_K8S_CACHE:-/var/cache/stockpipe/k8s}"
K8S_BIN="$K8S_CACHE/bin"

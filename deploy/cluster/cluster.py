#!/usr/bin/env python3
"""A single-node Kubernetes cluster on this machine, from state under one directory.

Usage (as root; binaries from deploy/cluster/build.sh):
    cluster.py up                 start it (tears down a stale one first); prints the kubeconfig
    cluster.py import TAR...      import image archives (`docker save` or OCI) into its containerd
    cluster.py down               stop it and remove everything it made; exit 1 if anything is left
    cluster.py status             which of its processes run
    cluster.py env                shell lines: KUBECONFIG=..., PATH with kubectl and helm

What runs: containerd (Debian's, with runc and the CNI plugins), etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kubelet, kube-proxy (iptables mode) and CoreDNS
(a host process answering on the node address, the kubelet's clusterDNS), each a child
process with its log under logs/. Pods get addresses on a CNI bridge.

Network: everything lives in NET (10.234.0.0/16), which `up` routes to an interface it creates
(DUMMY: a dummy interface, or a bridge without ports where the kernel has no dummy driver),
so an address of NET that nothing answers goes nowhere, never to the machine's network.
The node address is NODE_IP on that interface, pods are on POD_CIDR (the CNI bridge), Services on
SERVICE_CIDR (kube-proxy's DNAT rules). A FORWARD rule rejects pod traffic
leaving NET, and CoreDNS answers cluster.local only: nothing leaves the machine.

Host state it changes, all restored by `down`: the dummy interface and the bridge, network
namespaces, mounts under the state dir, cgroups under CGROUP_ROOT, iptables rules (its own
chain, kube-proxy's and the kubelet's), a few sysctls (ip_forward, the kubelet's kernel
tunables). `up` records the host's iptables rules, sysctls, network namespaces and links
first; `down` compares against that record and fails naming whatever it could not restore.

Environment: STOCKPIPE_CLUSTER_DIR (state, default /var/tmp/stockpipe-cluster),
STOCKPIPE_K8S_CACHE (binaries: $STOCKPIPE_K8S_CACHE/bin, default /var/cache/stockpipe/k8s).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

STATE = Path(os.environ.get("STOCKPIPE_CLUSTER_DIR", "/var/tmp/stockpipe-cluster"))
CACHE = Path(os.environ.get("STOCKPIPE_K8S_CACHE", "/var/cache/stockpipe/k8s"))
BIN = CACHE / "bin"

NODE = "stockpipe-node"
NET = "10.234.0.0/16"
NODE_IP = "10.234.0.1"
POD_CIDR = "10.234.1.0/24"
POD_GW = "10.234.1.1"
SERVICE_CIDR = "10.234.2.0/24"
KUBERNETES_SVC_IP = "10.234.2.1"
DUMMY = "spk8s0"
BRIDGE = "spk8s-br0"
CNI_NETWORK = "stockpipe-k8s"
CGROUP_ROOT = "stockpipe-k8s"
FWD_CHAIN = "STOCKPIPE-K8S-FWD"
PAUSE_IMAGE = "stockpipe.local/pause:3.10"
CNI_BIN = "/usr/lib/cni"
APISERVER = f"https://{NODE_IP}:6443"
ETCD = f"http://{NODE_IP}:2379"

# Kernel settings the run changes (ip_forward for Service routing; the kubelet sets the
# others as "kernel tunables"); `down` puts back the values `up` recorded.
SYSCTLS = [
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/ipv4/conf/all/route_localnet",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
]

# Start order; `down` stops them in reverse.
COMPONENTS = [
    "containerd",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "coredns",
]


class ClusterError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S', time.gmtime())}] {msg}", file=sys.stderr, flush=True)


def run(*args: str | Path, check: bool = True, capture: bool = True, timeout: float = 120,
        env: dict | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    cmd = [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=capture, timeout=timeout, env=env, input=input)
    if check and p.returncode != 0:
        err = (p.stderr or b"").decode(errors="replace").strip()
        raise ClusterError(f"{' '.join(cmd)}: exit {p.returncode}: {err[-2000:]}")
    return p


def out(*args: str | Path, **kw) -> str:
    return run(*args, **kw).stdout.decode()


# ----------------------------------------------------------------- paths

def p(*parts: str) -> Path:
    return STATE.joinpath(*parts)


SOCK = p("containerd", "containerd.sock")
ADMIN_KUBECONFIG = p("pki", "admin.kubeconfig")


def kubectl(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return run(BIN / "kubectl", "--kubeconfig", ADMIN_KUBECONFIG, *args, timeout=timeout, check=check)


# ----------------------------------------------------------------- host snapshot

BUILTIN_CHAINS = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}


def iptables_rules() -> dict[str, list[str]]:
    """The host's rules per family, without counters or comments (for before/after diffs)."""
    rules = {}
    for tool in ("iptables-save", "ip6tables-save"):
        if not shutil.which(tool):
            continue
        text = run(tool, check=False).stdout.decode()
        lines, table = [], ""
        for line in text.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith("-A "):
                lines.append(f"{table}: {line}")
            elif line.startswith(":") and line[1:].split(" ")[0] not in BUILTIN_CHAINS:
                lines.append(f"{table}: chain {line[1:].split(' ')[0]}")
        # Tables and built-in chains are not compared: iptables-nft creates an empty table
        # (policy ACCEPT, no rule) on first use and leaves it, which changes nothing.
        rules[tool] = lines
    return rules


def sysctl_values() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        f = Path("/proc/sys") / key
        if f.exists():
            values[key] = f.read_text().strip()
    return values


def netns_names() -> list[str]:
    d = Path("/run/netns")
    return sorted(x.name for x in d.iterdir()) if d.is_dir() else []


def link_names() -> list[str]:
    return sorted(x.name for x in Path("/sys/class/net").iterdir())


def dir_entries(path: str) -> list[str]:
    d = Path(path)
    return sorted(x.name for x in d.iterdir()) if d.is_dir() else []


def host_snapshot() -> dict:
    return {
        "iptables": iptables_rules(),
        "sysctl": sysctl_values(),
        "netns": netns_names(),
        "links": link_names(),
        "log_containers": dir_entries("/var/log/containers"),
        "cni_results": dir_entries("/var/lib/cni/results"),
        "shim_sockets": dir_entries("/run/containerd/s"),
    }


# ----------------------------------------------------------------- PKI

def openssl(*args: str | Path) -> None:
    run("openssl", *args)


def make_pki() -> None:
    d = p("pki")
    d.mkdir(parents=True, exist_ok=True)
    if (d / "ca.crt").exists():
        return
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", d / "ca.key")
    openssl("req", "-x509", "-new", "-key", d / "ca.key", "-subj", "/CN=stockpipe-k8s-ca",
            "-days", "7", "-out", d / "ca.crt")
    # service account token signing key pair
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", d / "sa.key")
    openssl("ec", "-in", d / "sa.key", "-pubout", "-out", d / "sa.pub")
    sans_apiserver = [
        f"IP:{NODE_IP}", f"IP:{KUBERNETES_SVC_IP}", "IP:127.0.0.1", "DNS:localhost",
        "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    certs = [
        # name, subject, extended key usage, SANs
        ("apiserver", "/CN=kube-apiserver", "serverAuth", sans_apiserver),
        # The apiserver's identity towards kubelets (logs, exec, port-forward, metrics proxy).
        ("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth", []),
        ("admin", "/O=system:masters/CN=stockpipe-admin", "clientAuth", []),
        ("controller-manager", "/CN=system:kube-controller-manager", "clientAuth", []),
        ("scheduler", "/CN=system:kube-scheduler", "clientAuth", []),
        # The Node authorizer only recognises system:node:<name> in system:nodes.
        ("kubelet", f"/O=system:nodes/CN=system:node:{NODE}", "clientAuth", []),
        ("kubelet-serving", f"/CN={NODE}", "serverAuth", [f"IP:{NODE_IP}", f"DNS:{NODE}"]),
        ("kube-proxy", "/CN=system:kube-proxy", "clientAuth", []),
        # CoreDNS runs on the host (not a pod): it watches Services and EndpointSlices.
        ("coredns", "/O=system:masters/CN=stockpipe-coredns", "clientAuth", []),
    ]
    for name, subject, eku, sans in certs:
        key, csr, crt, ext = (d / f"{name}.{x}" for x in ("key", "csr", "crt", "ext"))
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={eku}"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        openssl("x509", "-req", "-in", csr, "-CA", d / "ca.crt", "-CAkey", d / "ca.key",
                "-CAcreateserial", "-days", "7", "-extfile", ext, "-out", crt)
        csr.unlink()
        ext.unlink()
    for name in ("admin", "controller-manager", "scheduler", "kubelet", "kube-proxy", "coredns"):
        write_kubeconfig(d / f"{name}.kubeconfig", d / f"{name}.crt", d / f"{name}.key")


def write_kubeconfig(path: Path, crt: Path, key: Path) -> None:
    b64 = lambda f: base64.b64encode(f.read_bytes()).decode()  # noqa: E731
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stockpipe", "cluster": {
            "server": APISERVER, "certificate-authority-data": b64(p("pki", "ca.crt"))}}],
        "users": [{"name": "user", "user": {
            "client-certificate-data": b64(crt), "client-key-data": b64(key)}}],
        "contexts": [{"name": "stockpipe", "context": {"cluster": "stockpipe", "user": "user"}}],
        "current-context": "stockpipe",
    }
    path.write_text(json.dumps(cfg, indent=1))
    path.chmod(0o600)


# ----------------------------------------------------------------- configs

def write_configs() -> None:
    for sub in ("containerd", "cni/net.d", "cni/ipam", "etcd", "kubelet", "logs", "pids",
                "pods-logs", "kubelet-plugins", "coredns", "runc", "apiserver-certs"):
        p(*sub.split("/")).mkdir(parents=True, exist_ok=True)

    p("containerd", "config.toml").write_text(f"""\
version = 2
root = "{p('containerd', 'root')}"
state = "{p('containerd', 'state')}"
# These snapshotters cannot work here; disabling them keeps the log clean.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{SOCK}"

[ttrpc]
  address = "{p('containerd', 'containerd.sock.ttrpc')}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{p('containerd', 'opt')}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE here: the kubelet's oom_score_adj=-998 for sandboxes would make
  # runc fail ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{p('runc')}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{p('cni', 'net.d')}"
    max_conf_num = 1
""")

    p("cni", "net.d", "10-stockpipe.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            # No masquerade: pods talk to each other, Services and the node only.
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GW}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(p("cni", "ipam")),
            },
        }],
    }, indent=1))

    p("kubelet", "resolv.conf").write_text("")  # pods get cluster DNS only
    p("kubelet", "config.yaml").write_text(json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": NODE_IP,
        "healthzPort": 10248,
        "tlsCertFile": str(p("pki", "kubelet-serving.crt")),
        "tlsPrivateKeyFile": str(p("pki", "kubelet-serving.key")),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(p("pki", "ca.crt"))},
        },
        "authorization": {"mode": "Webhook"},
        # cgroup v1 on this machine: Kubernetes 1.34 still runs there when told to.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failSwapOn": False,
        "clusterDNS": [NODE_IP],
        "clusterDomain": "cluster.local",
        "resolvConf": str(p("kubelet", "resolv.conf")),
        "containerRuntimeEndpoint": f"unix://{SOCK}",
        "imageServiceEndpoint": f"unix://{SOCK}",
        "podLogsDir": str(p("pods-logs")),
        "volumePluginDir": str(p("kubelet-plugins")),
        # Small thresholds: a busy shared machine must not evict the test's pods.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "nodefs.inodesFree": "1%", "imagefs.available": "1%"},
        # Imported images cannot be pulled again: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 60,
        "registerNode": True,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "shutdownGracePeriod": "0s",
    }, indent=1))

    p("kube-proxy.yaml").write_text(json.dumps({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(p("pki", "kube-proxy.kubeconfig"))},
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"{NODE_IP}:10256",
        "metricsBindAddress": f"{NODE_IP}:10249",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE,
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # 0 = leave the host's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        # No NodePorts on 127.0.0.1 (that would need route_localnet=1).
        "iptables": {"localhostNodePorts": False, "syncPeriod": "30s", "minSyncPeriod": "1s"},
    }, indent=1))

    p("coredns", "Corefile").write_text(f"""\
cluster.local:53 in-addr.arpa:53 {{
    bind {NODE_IP}
    errors
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {p('pki', 'coredns.kubeconfig')} stockpipe
        pods insecure
        fallthrough in-addr.arpa
        ttl 5
    }}
    cache 5
}}
.:53 {{
    bind {NODE_IP}
    # No upstream: names outside the cluster do not exist for its pods.
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
""")


# ----------------------------------------------------------------- processes

def pidfile(name: str) -> Path:
    return p("pids", f"{name}.pid")


def alive(pid: int, exe_name: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and os.path.basename(cmdline[0].decode(errors="replace")) == exe_name


def running(name: str) -> int | None:
    try:
        pid = int(pidfile(name).read_text())
    except (OSError, ValueError):
        return None
    return pid if alive(pid, exe(name).name) else None


def exe(name: str) -> Path:
    if name == "containerd":
        return Path(shutil.which("containerd") or "/usr/bin/containerd")
    return BIN / name


def command(name: str) -> list[str]:
    pki = p("pki")
    if name == "containerd":
        return ["--config", str(p("containerd", "config.toml"))]
    if name == "etcd":
        return ["--name", NODE, "--data-dir", str(p("etcd", "data")),
                "--listen-client-urls", ETCD, "--advertise-client-urls", ETCD,
                "--listen-peer-urls", f"http://{NODE_IP}:2380",
                "--initial-advertise-peer-urls", f"http://{NODE_IP}:2380",
                "--initial-cluster", f"{NODE}=http://{NODE_IP}:2380",
                "--listen-metrics-urls", f"http://{NODE_IP}:2381",
                "--quota-backend-bytes", str(2 << 30), "--log-level", "warn"]
    if name == "kube-apiserver":
        return ["--etcd-servers", ETCD, "--bind-address", NODE_IP, "--advertise-address", NODE_IP,
                "--secure-port", "6443", "--service-cluster-ip-range", SERVICE_CIDR,
                "--client-ca-file", f"{pki}/ca.crt",
                "--tls-cert-file", f"{pki}/apiserver.crt", "--tls-private-key-file", f"{pki}/apiserver.key",
                "--kubelet-client-certificate", f"{pki}/apiserver-kubelet-client.crt",
                "--kubelet-client-key", f"{pki}/apiserver-kubelet-client.key",
                "--kubelet-certificate-authority", f"{pki}/ca.crt",
                "--kubelet-preferred-address-types", "InternalIP",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", f"{pki}/sa.pub",
                "--service-account-signing-key-file", f"{pki}/sa.key",
                "--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction",
                "--allow-privileged=true", "--profiling=false",
                "--cert-dir", str(p("apiserver-certs")), "--v", "1"]
    if name == "kube-controller-manager":
        return ["--kubeconfig", f"{pki}/controller-manager.kubeconfig",
                "--authentication-kubeconfig", f"{pki}/controller-manager.kubeconfig",
                "--authorization-kubeconfig", f"{pki}/controller-manager.kubeconfig",
                "--bind-address", NODE_IP, "--leader-elect=false",
                "--service-account-private-key-file", f"{pki}/sa.key",
                "--root-ca-file", f"{pki}/ca.crt", "--use-service-account-credentials=true",
                "--cluster-signing-cert-file", f"{pki}/ca.crt",
                "--cluster-signing-key-file", f"{pki}/ca.key",
                "--service-cluster-ip-range", SERVICE_CIDR,
                "--cert-dir", str(p("apiserver-certs")), "--profiling=false", "--v", "1"]
    if name == "kube-scheduler":
        return ["--kubeconfig", f"{pki}/scheduler.kubeconfig",
                "--authentication-kubeconfig", f"{pki}/scheduler.kubeconfig",
                "--authorization-kubeconfig", f"{pki}/scheduler.kubeconfig",
                "--bind-address", NODE_IP, "--leader-elect=false", "--profiling=false", "--v", "1"]
    if name == "kubelet":
        return ["--config", str(p("kubelet", "config.yaml")),
                "--kubeconfig", f"{pki}/kubelet.kubeconfig", "--hostname-override", NODE,
                "--node-ip", NODE_IP, "--root-dir", str(p("kubelet", "root")),
                "--cert-dir", str(p("kubelet", "pki")), "--v", "1"]
    if name == "kube-proxy":
        return ["--config", str(p("kube-proxy.yaml")), "--v", "1"]
    if name == "coredns":
        return ["-conf", str(p("coredns", "Corefile"))]
    raise ValueError(name)


def start(name: str) -> int:
    if (pid := running(name)) is not None:
        return pid
    logf = open(p("logs", f"{name}.log"), "ab")
    env = dict(os.environ)
    # containerd finds the shim and runc, the kubelet mount and iptables, on PATH.
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    proc = subprocess.Popen([str(exe(name)), *command(name)], stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=STATE, env=env)
    logf.close()
    pidfile(name).write_text(str(proc.pid))
    # Until the child has exec'd, its command line is still python's.
    for _ in range(100):
        if alive(proc.pid, exe(name).name) or proc.poll() is not None:
            break
        time.sleep(0.05)
    return proc.pid


def stop(name: str, timeout: float = 20) -> None:
    pid = running(name)
    if pid is None:
        pidfile(name).unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid, exe(name).name):
        reap(pid)
        time.sleep(0.2)
    if alive(pid, exe(name).name):
        log(f"{name} ({pid}) ignored SIGTERM for {timeout:.0f}s: SIGKILL")
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            reap(pid)
            if not alive(pid, exe(name).name):
                break
            time.sleep(0.1)
    pidfile(name).unlink(missing_ok=True)


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_for(what: str, check, timeout: float, name: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if name and running(name) is None:
            raise ClusterError(f"{name} exited while waiting for {what}; last log lines:\n{tail(name)}")
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - a probe's failure is the retry reason
            last = exc
        time.sleep(0.5)
    detail = f" (last error: {last})" if last else ""
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{detail}"
                       + (f"; last log lines of {name}:\n{tail(name)}" if name else ""))


def tail(name: str, n: int = 25) -> str:
    try:
        return "\n".join(p("logs", f"{name}.log").read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------- network and cgroups

def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("ip", *args, check=check)


def net_up() -> None:
    if not Path(f"/sys/class/net/{DUMMY}").exists():
        # A dummy interface where the kernel has them; else (this machine's kernel has no
        # dummy driver) a bridge without ports: the same thing for this purpose, an
        # interface that holds an address and drops whatever is routed into it.
        if ip("link", "add", DUMMY, "type", "dummy", check=False).returncode != 0:
            ip("link", "add", DUMMY, "type", "bridge")
    # /16 on the dummy: every address of NET without a more specific route (the pod
    # bridge's) is routed into a device that drops it.
    if NODE_IP not in out("ip", "-4", "addr", "show", "dev", DUMMY):
        ip("addr", "add", f"{NODE_IP}/16", "dev", DUMMY)
    ip("link", "set", DUMMY, "up")
    # Pods reach Services (DNAT) and the node through the host's forwarding path.
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    if Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        Path("/proc/sys/net/bridge/bridge-nf-call-iptables").write_text("1\n")
    # Pod traffic may not leave NET: with forwarding on, a pod could otherwise route
    # (unmasqueraded) through the machine's own network.
    if run("iptables", "-w", "-n", "-L", FWD_CHAIN, check=False).returncode != 0:
        run("iptables", "-w", "-N", FWD_CHAIN)
        run("iptables", "-w", "-A", FWD_CHAIN, "-d", NET, "-j", "ACCEPT")
        run("iptables", "-w", "-A", FWD_CHAIN, "-j", "REJECT")
    rule = ["FORWARD", "-s", NET, "-j", FWD_CHAIN]
    if run("iptables", "-w", "-C", *rule, check=False).returncode != 0:
        run("iptables", "-w", "-I", *rule)


def cgroup_roots() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    roots = []
    if (base / "cgroup.controllers").exists():  # pure cgroup v2
        return [base / CGROUP_ROOT]
    for d in sorted(base.iterdir()):
        if d.is_dir() and not d.is_symlink() and (d / "cgroup.procs").exists():
            roots.append(d / CGROUP_ROOT)
    return roots


def cgroups_up() -> None:
    for r in cgroup_roots():
        r.mkdir(exist_ok=True)
        if r.parent.name == "cpuset":  # a new cpuset cgroup starts empty: inherit
            for f in ("cpuset.cpus", "cpuset.mems"):
                (r / f).write_text((r.parent / f).read_text())


# ----------------------------------------------------------------- images

def pause_archive() -> bytes:
    """An OCI image archive holding the static pause binary (bin/pause), tagged PAUSE_IMAGE."""
    binary = (BIN / "pause").read_bytes()
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as t:
        info = tarfile.TarInfo("pause")
        info.size, info.mode, info.mtime = len(binary), 0o755, 0
        t.addfile(info, io.BytesIO(binary))
    layer = layer_buf.getvalue()
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media, "digest": digest, "size": len(data)}

    layer_desc = blob(layer, "application/vnd.oci.image.layer.v1.tar")
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [layer_desc],
    }).encode()
    mdesc = blob(manifest, "application/vnd.oci.image.manifest.v1+json")
    mdesc["annotations"] = {"io.containerd.image.name": PAUSE_IMAGE,
                            "org.opencontainers.image.ref.name": PAUSE_IMAGE.rsplit(":", 1)[1]}
    index = json.dumps({"schemaVersion": 2, "manifests": [mdesc]}).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
        files.update({f"blobs/sha256/{d.split(':')[1]}": b for d, b in blobs.items()})
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ctr(*args: str, **kw) -> subprocess.CompletedProcess:
    return run("ctr", "--address", str(SOCK), "--namespace", "k8s.io", *args, **kw)


def import_images(paths: list[str]) -> None:
    for path in paths:
        t0 = time.monotonic()
        # "-": stdin, streamed (docker save | cluster.py import -).
        p = subprocess.run(["ctr", "--address", str(SOCK), "--namespace", "k8s.io", "images", "import", path],
                           stdin=sys.stdin if path == "-" else subprocess.DEVNULL, capture_output=True, timeout=900)
        if p.returncode != 0:
            raise ClusterError(f"ctr images import {path}: exit {p.returncode}: {p.stderr.decode()[-2000:]}")
        for line in p.stdout.decode().splitlines():
            log(f"  {line}")
        log(f"imported {path} ({time.monotonic() - t0:.1f}s)")


# ----------------------------------------------------------------- up

def preflight() -> None:
    if os.geteuid() != 0:
        raise ClusterError("must run as root (containerd, network interfaces, iptables)")
    missing = [str(BIN / b) for b in ("etcd", "kube-apiserver", "kube-controller-manager",
                                      "kube-scheduler", "kubelet", "kube-proxy", "kubectl",
                                      "coredns", "helm", "pause", "crictl")
               if not (BIN / b).is_file()]
    missing += [t for t in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip",
                            "iptables", "iptables-save", "conntrack", "openssl")
                if not shutil.which(t)]
    missing += [f"{CNI_BIN}/{c}" for c in ("bridge", "host-local", "loopback")
                if not Path(CNI_BIN, c).exists()]
    if missing:
        raise ClusterError("missing: " + ", ".join(missing)
                           + " (deploy/cluster/build.sh; apt-get install containerd runc "
                             "containernetworking-plugins iptables conntrack)")


def up() -> None:
    preflight()
    if p("snapshot.json").exists():
        log(f"a previous cluster's state is in {STATE}: tearing it down first")
        down()
    t0 = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    STATE.chmod(0o700)
    p("snapshot.json").write_text(json.dumps(host_snapshot(), indent=1))
    make_pki()
    write_configs()
    net_up()
    cgroups_up()

    start("containerd")
    wait_for("containerd", lambda: ctr("version", timeout=10, check=False).returncode == 0, 30, "containerd")
    archive = p("pause.oci.tar")
    archive.write_bytes(pause_archive())
    ctr("images", "import", str(archive))

    start("etcd")
    wait_for("etcd", lambda: urlopen_ok(f"{ETCD}/health"), 60, "etcd")
    start("kube-apiserver")
    wait_for("kube-apiserver /readyz",
             lambda: kubectl("get", "--raw", "/readyz", timeout=10, check=False).returncode == 0,
             120, "kube-apiserver")
    for name in ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns"):
        start(name)
    wait_for(f"node {NODE} Ready", node_ready, 120, "kubelet")
    wait_for("the default ServiceAccount",
             lambda: kubectl("get", "serviceaccount", "default", timeout=10, check=False).returncode == 0,
             60, "kube-controller-manager")
    for name in COMPONENTS:
        if running(name) is None:
            raise ClusterError(f"{name} is not running; last log lines:\n{tail(name)}")
    log(f"cluster up in {time.monotonic() - t0:.1f}s; KUBECONFIG={ADMIN_KUBECONFIG}")


def urlopen_ok(url: str) -> bool:
    import urllib.request
    with urllib.request.urlopen(url, timeout=3) as r:
        return r.status == 200


def node_ready() -> bool:
    r = kubectl("get", "node", NODE, "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}", timeout=10, check=False)
    return r.returncode == 0 and r.stdout.decode().strip() == "True"


# ----------------------------------------------------------------- down

def mounts_under(prefixes: list[str]) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split(" ")[4].replace("\\040", " ")
        if any(mnt == pre or mnt.startswith(pre.rstrip("/") + "/") for pre in prefixes):
            found.append(mnt)
    return found


def our_shims() -> list[int]:
    """containerd-shim-runc-v2 processes of this cluster's containerd (by its socket)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and str(SOCK).encode() in b" ".join(cmd):
            pids.append(int(d.name))
    return pids


def processes_using_state() -> list[str]:
    """Processes whose executable, cwd or command line points into the state dir."""
    found = []
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if str(STATE) in cmd or cwd.startswith(str(STATE)):
            found.append(f"{d.name}: {cmd.strip()[:160]}")
    return found


def remove_pods() -> None:
    """Stop and remove every pod sandbox through the CRI, so CNI DEL frees addresses,
    veths and network namespaces, and the kubelet's volumes are unmounted."""
    if running("containerd") is None or not (BIN / "crictl").exists():
        return
    crictl = [str(BIN / "crictl"), "--runtime-endpoint", f"unix://{SOCK}", "--timeout", "30s"]
    for _ in range(3):
        r = run(*crictl, "pods", "-q", check=False, timeout=60)
        pods = r.stdout.decode().split()
        if not pods:
            return
        for pod in pods:
            run(*crictl, "stopp", pod, check=False, timeout=90)
            run(*crictl, "rmp", "-f", pod, check=False, timeout=90)
    log("pods still present after 3 rounds of stopp/rmp")


def iptables_cleanup() -> None:
    if (BIN / "kube-proxy").exists():
        run(BIN / "kube-proxy", "--cleanup", "--v", "0", check=False, timeout=60)
    for tool in ("iptables", "ip6tables"):
        if not shutil.which(tool):
            continue
        run(tool, "-w", "-D", "FORWARD", "-s", NET, "-j", FWD_CHAIN, check=False)
        # Any rule jumping to a chain of ours (KUBE-*, CNI-*, ours), then those chains.
        save = run(f"{tool}-save", check=False).stdout.decode()
        table = None
        ours = re.compile(r"-j (KUBE-[A-Z0-9-]+|CNI-[A-Za-z0-9-]+|" + FWD_CHAIN + r")\b")
        chains: dict[str, list[str]] = {}
        for line in save.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and table:
                chain = line[1:].split(" ")[0]
                if chain.startswith(("KUBE-", "CNI-", FWD_CHAIN)):
                    chains.setdefault(table, []).append(chain)
            elif line.startswith("-A ") and table and ours.search(line):
                chain = line.split(" ")[1]
                if not chain.startswith(("KUBE-", "CNI-", FWD_CHAIN)):
                    args = line.split(" ")[2:]
                    run(tool, "-w", "-t", table, "-D", chain, *unquote(args), check=False)
        for table, names in chains.items():
            for c in names:
                run(tool, "-w", "-t", table, "-F", c, check=False)
            for c in names:
                run(tool, "-w", "-t", table, "-X", c, check=False)


def unquote(args: list[str]) -> list[str]:
    """iptables-save quotes comments; rejoin quoted words for -D."""
    res, cur = [], None
    for a in args:
        if cur is not None:
            cur += " " + a
            if a.endswith('"'):
                res.append(cur[1:-1])
                cur = None
        elif a.startswith('"') and not (a.endswith('"') and len(a) > 1):
            cur = a
        else:
            res.append(a[1:-1] if a.startswith('"') and a.endswith('"') and len(a) > 1 else a)
    return res


def cgroups_down() -> list[str]:
    left = []
    for r in cgroup_roots():
        if not r.exists():
            continue
        dirs = sorted((d for d in r.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True)
        for d in [*dirs, r]:
            for _ in range(20):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.25)
            else:
                left.append(str(d))
    return left


def down() -> int:
    """Stop everything and restore the host; returns the number of problems left (0 = clean)."""
    if os.geteuid() != 0:
        raise ClusterError("must run as root")
    if not STATE.exists():
        log(f"no cluster state at {STATE}")
        return 0
    t0 = time.monotonic()
    # The kubelet first, so it does not restart what the CRI removes.
    for name in ("coredns", "kube-scheduler", "kube-controller-manager", "kubelet"):
        stop(name)
    remove_pods()
    for name in ("kube-proxy", "kube-apiserver", "etcd"):
        stop(name)
    # Containers (if any survived) and then containerd itself.
    if running("containerd") is not None:
        r = ctr("tasks", "ls", "-q", check=False)
        for task in r.stdout.decode().split():
            ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        time.sleep(0.5)
        for c in ctr("containers", "ls", "-q", check=False).stdout.decode().split():
            ctr("tasks", "delete", "-f", c, check=False)
            ctr("containers", "delete", c, check=False)
    stop("containerd")
    for pid in our_shims():
        log(f"killing leftover shim {pid}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.3)

    snap = {}
    if p("snapshot.json").exists():
        snap = json.loads(p("snapshot.json").read_text())
    # Network namespaces the CNI made for pods that were not torn down by CRI.
    for ns in netns_names():
        if ns not in snap.get("netns", []) and ns.startswith("cni-"):
            run("ip", "netns", "delete", ns, check=False)
    for mnt in reversed(mounts_under([str(STATE)])):
        run("umount", "-l", mnt, check=False)
    for dev in (BRIDGE, DUMMY):
        if Path(f"/sys/class/net/{dev}").exists():
            ip("link", "delete", dev, check=False)
    iptables_cleanup()
    problems = []
    problems += [f"cgroup left: {c}" for c in cgroups_down()]
    for key, value in snap.get("sysctl", {}).items():
        f = Path("/proc/sys") / key
        if f.exists() and f.read_text().strip() != value:
            try:
                f.write_text(value + "\n")
            except OSError as exc:
                problems.append(f"sysctl {key}: cannot restore {value!r}: {exc}")
    # Files the CNI cache and the kubelet keep outside the state dir.
    for d in ("/var/lib/cni/results",):
        for f in Path(d).glob(f"{CNI_NETWORK}-*") if Path(d).is_dir() else []:
            f.unlink(missing_ok=True)
    for link in Path("/var/log/containers").glob("*.log") if Path("/var/log/containers").is_dir() else []:
        if link.is_symlink() and os.readlink(link).startswith(str(STATE)):
            link.unlink()

    # Verify.
    problems += [f"process left: {x}" for x in processes_using_state()]
    problems += [f"shim left: {x}" for x in our_shims()]
    problems += [f"mount left: {m}" for m in mounts_under([str(STATE)])]
    if snap:
        now = host_snapshot()
        for key in ("netns", "links", "log_containers", "cni_results", "shim_sockets"):
            extra = sorted(set(now[key]) - set(snap[key]))
            problems += [f"{key} left: {x}" for x in extra]
        for tool, before in snap["iptables"].items():
            after = now["iptables"].get(tool, [])
            extra = [r for r in after if r not in before]
            gone = [r for r in before if r not in after]
            problems += [f"{tool} rule left: {r}" for r in extra]
            problems += [f"{tool} rule lost: {r}" for r in gone]
        for key, value in snap["sysctl"].items():
            if now["sysctl"].get(key) != value:
                problems.append(f"sysctl {key} = {now['sysctl'].get(key)!r}, was {value!r}")
    for prob in problems:
        log(f"LEFT BEHIND: {prob}")
    if not problems:
        # Logs are kept for a failed run's post-mortem; the rest goes.
        keep = STATE.with_name(STATE.name + "-logs")
        if p("logs").exists():
            shutil.rmtree(keep, ignore_errors=True)
            shutil.move(str(p("logs")), str(keep))
        shutil.rmtree(STATE, ignore_errors=True)
        if STATE.exists():
            problems.append(f"state dir {STATE} could not be removed")
            log(f"LEFT BEHIND: {problems[-1]}")
    log(f"cluster down in {time.monotonic() - t0:.1f}s: "
        + ("nothing left behind" if not problems else f"{len(problems)} thing(s) left behind"))
    return len(problems)


def status() -> int:
    rc = 0
    for name in COMPONENTS:
        pid = running(name)
        print(f"{name:24} {'running, pid ' + str(pid) if pid else 'stopped'}")
        rc |= pid is None
    return rc


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "up":
            up()
            print(ADMIN_KUBECONFIG)
            return 0
        if cmd == "down":
            return 1 if down() else 0
        if cmd == "status":
            return status()
        if cmd == "import":
            import_images(args)
            return 0
        if cmd == "env":
            print(f"export KUBECONFIG={ADMIN_KUBECONFIG}\nexport PATH={BIN}:$PATH")
            return 0
    except ClusterError as exc:
        log(f"error: {exc}")
        return 1
    print(f"unknown command {cmd!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

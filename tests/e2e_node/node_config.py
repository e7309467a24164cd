"""The configuration files of a real test node: containerd, the kubelet, kube-proxy and CNI.

Owns what each daemon of the node tier is told, as plain text or dicts built from a
:class:`NodeLayout`; never starts anything and never touches the host. Why each setting is what
it is (what this sandbox lacks, what would otherwise leak onto the host) is said next to it;
the whole picture is in tests/e2e_node/README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POD_CIDR = "10.88.0.0/16"
"""Pod IPs on the node's CNI bridge (inside the node's own network namespace)."""
BRIDGE = "kaip0"
REGISTRY = "localhost:5000"
"""The image registry as the node sees it: on the loopback of the node's network namespace."""
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
"""In the node's private /run (its mount namespace), so it never clashes with a host's own."""
CNI_BIN_DIR = "/usr/lib/cni"
"""Where Debian's containernetworking-plugins installs the plugins."""


@dataclass(frozen=True)
class NodeLayout:
    """Where one node's files live and how it is reached."""

    workdir: Path
    name: str
    node_ip: str
    """The node's address on its link to the host (the kubelet serves there)."""
    host_ip: str
    """The host's end of that link: the apiserver listens there."""
    cgroup_root: str
    """The cgroup (in every hierarchy) under which every pod's cgroups are made."""
    pause_image: str
    kubelet_port: int = 10250

    @property
    def containerd_dir(self) -> Path:
        return self.workdir / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def registry_hosts_dir(self) -> Path:
        return self.containerd_dir / "certs.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.workdir / "cni"

    @property
    def kubelet_dir(self) -> Path:
        return self.workdir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.workdir / "kubelet-config.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.workdir / "kube-proxy-config.yaml"


def containerd_toml(layout: NodeLayout) -> str:
    """containerd 1.6 (Debian bookworm), CRI plugin on, state in the node's private /run."""
    root = layout.containerd_dir / "root"
    return f"""\
version = 2
root = "{root}"
state = "/run/containerd"

[grpc]
  address = "{CONTAINERD_SOCKET}"

# Its default is /opt/containerd on the host.
[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.containerd_dir / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  # Pulled through the node's registry like every other image (no registry.k8s.io here).
  sandbox_image = "{layout.pause_image}"
  # The kubelet gives pod sandboxes a negative oom_score_adj; without CAP_SYS_RESOURCE (this
  # sandbox lacks it) runc fails with "can't get final child's PID from pipe: EOF". With this,
  # a value below containerd's own is raised to it instead.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_tls_streaming = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{layout.cni_conf_dir}"

  # hosts.toml per registry: the node's registry speaks plain http on loopback.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{layout.registry_hosts_dir}"
"""


def registry_hosts_toml(registry: str = REGISTRY) -> str:
    """containerd's hosts.toml for a plain-http registry (what a real node's admin writes)."""
    return f"""\
server = "http://{registry}"

[host."http://{registry}"]
  capabilities = ["pull", "resolve"]
"""


def cni_conflist() -> dict[str, Any]:
    """A bridge with host-local IPAM: pods get 10.88.x.y and reach out through the node (NAT)."""
    return {
        "cniVersion": "1.0.0",
        "name": "kaip-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                # A pod reaching its own Service is sent back to itself over the bridge.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: NodeLayout) -> dict[str, Any]:
    """KubeletConfiguration for a node in a sandbox without systemd or CAP_SYS_RESOURCE."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": layout.node_ip,
        "port": layout.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        # Served only on the node's private link to the host; the apiserver (logs, exec) is
        # its one client there.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "imageServiceEndpoint": f"unix://{CONTAINERD_SOCKET}",
        # No systemd here, and the cgroup v1 hierarchies are what the sandbox offers.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        # No per-QoS cgroups: every pod's cgroup goes straight under cgroupRoot, which the
        # harness creates and removes (the host's cgroup tree is left as it was).
        "cgroupsPerQOS": False,
        "cgroupRoot": layout.cgroup_root,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "localStorageCapacityIsolation": False,
        # No eviction and no image GC: a shared test machine's disk is not the node's to police.
        "evictionHard": {},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "resolvConf": "",
        "serializeImagePulls": False,
        "runtimeRequestTimeout": "10m",
        "maxPods": 110,
        # The kubelet sets vm.overcommit_memory, kernel.panic and friends unless they already
        # hold its values; the harness masks them in the node's own /proc, so it never writes
        # the host's.
        "protectKernelDefaults": False,
        "shutdownGracePeriod": "0s",
        "rotateCertificates": False,
        "registerNode": True,
        "fileCheckFrequency": "1s",
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "5s",
    }


def kube_proxy_config(layout: NodeLayout, kubeconfig: Path) -> dict[str, Any]:
    """kube-proxy in iptables mode, inside the node's network namespace only."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": layout.name,
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "detectLocalMode": "ClusterCIDR",
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        # 0: leave the conntrack table's size and timeouts alone (they are the host's).
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"syncPeriod": "30s", "minSyncPeriod": "0s"},
    }


KERNEL_DEFAULTS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
"""The sysctls the kubelet enforces (its setupKernelTunables), as files under /proc/sys; the
node's mount namespace sees these values instead of the host's, so the kubelet finds them as it
wants and writes nothing."""


def to_json(data: dict[str, Any]) -> str:
    """JSON is YAML, and every daemon here reads it."""
    return json.dumps(data, indent=2) + "\n"

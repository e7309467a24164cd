"""A real Kubernetes node beside the kwok nodes, for tests and humans: pods that really run.

Owns starting, probing and stopping the node tier: the control plane of
``tests/e2e_kube/kube_harness.py`` (its apiserver listening on the host's end of the node's link,
where pods reach it through the ``kubernetes`` Service) and one node, ``real-0``, inside its own
namespaces (node_namespace.py): containerd + runc (Debian), the CNI bridge and host-local plugins
(Debian), the kubelet and kube-proxy (iptables mode) built by tools/k8s/build.sh, and the OCI
registry built by tools/registry/build.sh, on the node's loopback (``localhost:5000``), holding
kaip's images from tools/images/build.sh. Pods pull from it by reference, as on any cluster.

The kwok nodes stay (tainted ``kwok.x-k8s.io/node=fake:NoSchedule``), so pods land on the real
node unless they tolerate the taint. Nothing of this listens anywhere but the node's namespace
and the host's end of its private link. The pytest fixtures are in ``conftest.py``;
``make k8s-up NODE=real`` / ``make k8s-down`` run this file as a script::

    python tests/e2e_node/node_harness.py up --dir .kaip/k8s
    python tests/e2e_node/node_harness.py down --dir .kaip/k8s
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e_kube"))

import node_namespace  # noqa: E402
from kube_harness import (  # noqa: E402
    ADMIN,
    BINARIES,
    DEFAULT_NODES,
    FAKE_NODE_ANNOTATION,
    REPO_ROOT,
    ControlPlane,
    FakeNode,
    HarnessError,
    _is_ours,
    binary_dir,
    missing_binaries,
    start_cluster,
    write_kubeconfig,
)
from node_config import (  # noqa: E402
    CNI_BIN_DIR,
    CONTAINERD_SOCKET,
    REGISTRY,
    NodeLayout,
    cni_conflist,
    containerd_toml,
    kube_proxy_config,
    kubelet_config,
    registry_hosts_toml,
    to_json,
)

NODE_NAME = "real-0"
NODE_BINARIES = (*BINARIES, "kubelet", "kube-proxy")
IMAGES_SCRIPT = REPO_ROOT / "tools" / "images" / "build.sh"
REGISTRY_SCRIPT = REPO_ROOT / "tools" / "registry" / "build.sh"
DEBIAN_TOOLS = {
    "containerd": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "buildah": "buildah",
    f"{CNI_BIN_DIR}/bridge": "containernetworking-plugins",
}
OPERATOR_NAMESPACE = "kaip-system"
OPERATOR_ACCOUNT = "kaip-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
"""The chart's operator identity; the apiserver audits its every request (403s are counted)."""
FAKE_TAINT = {"key": FAKE_NODE_ANNOTATION, "value": "fake", "effect": "NoSchedule"}
SETUP_HINT = "run tools/setup.sh (what `make test` runs first) to install and build it"


class NodeError(HarnessError):
    """The real node could not be started or did not become ready."""


# -- what the tier needs -------------------------------------------------------------------------


def missing_parts() -> list[str]:
    """What the node tier lacks on this machine, each with where it comes from."""
    missing = [
        f"{name} (tools/k8s/build.sh)" for name in missing_binaries(binary_dir(), NODE_BINARIES)
    ]
    for tool, package in DEBIAN_TOOLS.items():
        if shutil.which(tool) is None and not Path(tool).exists():
            missing.append(f"{tool} (Debian package {package})")
    if registry_binary() is None:
        missing.append("the OCI registry (tools/registry/build.sh)")
    if subprocess.run([str(IMAGES_SCRIPT), "--check"], capture_output=True).returncode != 0:
        missing.append("kaip's images (tools/images/build.sh)")
    if os.geteuid() != 0:
        missing.append("root (namespaces, mounts, cgroups)")
    return missing


def registry_binary() -> Path | None:
    out = subprocess.run([str(REGISTRY_SCRIPT), "--check"], capture_output=True, text=True)
    return Path(out.stdout.strip()) if out.returncode == 0 else None


def image_tags() -> dict[str, str]:
    """name -> local tag of each image tools/images/build.sh builds (current sources)."""
    out = subprocess.run(
        [str(IMAGES_SCRIPT), "--list"], capture_output=True, text=True, check=True, timeout=60
    )
    return dict(line.split() for line in out.stdout.splitlines() if line.strip())


# -- the cluster ---------------------------------------------------------------------------------


@dataclass
class RealCluster:
    """The control plane and its real node, and how to reach what runs there."""

    plane: ControlPlane
    node: node_namespace.NodeNamespace
    layout: NodeLayout
    images: dict[str, str] = field(default_factory=dict)
    """name -> reference pods use (``localhost:5000/kaip/server:<hash>``)."""
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds each start-up step took (``control_plane``, ``push_images``, ...)."""

    @property
    def workdir(self) -> Path:
        return self.plane.workdir.parent

    def kubectl(
        self, *args: str, user: str = ADMIN, check: bool = True, timeout: float = 330
    ) -> str:
        """kubectl as ``user``; long enough for ``kubectl wait`` on real pods (image pulls)."""
        out = subprocess.run(
            [
                str(self.plane.bin_dir / "kubectl"),
                "--kubeconfig",
                str(self.plane.kubeconfig_for(user)),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and out.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def in_node(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 300,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the node's network namespace (Service IPs, pod IPs), host files."""
        return self.node.run(argv, timeout=timeout, check=check, input=input)

    def log(self, daemon: str) -> Path:
        return self.workdir / "logs" / f"{daemon}.log"

    def check_alive(self) -> None:
        self.plane.check_alive()
        for name, process in self.daemons.items():
            if process.poll() is not None:
                tail = self.log(name).read_text(errors="replace").splitlines()[-20:]
                raise NodeError(f"{name} exited ({process.returncode}):\n" + "\n".join(tail))

    def stop(self, keep_logs: bool = False) -> list[str]:
        """Stop the node (every process in it), then the control plane; undo host changes.

        Removes the work directory, or with ``keep_logs`` only its bulk (images containerd
        unpacked, the kubelet's pod directories, etcd's data). Returns what could not be undone
        (nothing, normally).
        """
        started = time.monotonic()
        problems = self.node.destroy()
        self.daemons.clear()
        self.timings["stop_node"] = time.monotonic() - started
        started = time.monotonic()
        self.plane.stop(keep_workdir=True)
        self.timings["stop_control_plane"] = time.monotonic() - started
        bulk = [self.layout.containerd_dir, self.layout.kubelet_dir, self.plane.workdir / "etcd"]
        for path in [self.workdir] if not keep_logs else bulk:
            shutil.rmtree(path, ignore_errors=True)
        return problems


def _wait(what: str, probe: Callable[[], Any], timeout: float, cluster: RealCluster) -> Any:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        cluster.check_alive()
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # a failing probe is the normal state until it passes
            last = f" (last: {exc})"
        time.sleep(0.5)
    logs = "\n".join(
        f"--- {name}\n"
        + "\n".join(cluster.log(name).read_text(errors="replace").splitlines()[-15:])
        for name in cluster.daemons
    )
    raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}{last}\n{logs}")


def _http_in_node(cluster: RealCluster, url: str) -> bool:
    probe = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)"
    return cluster.in_node([sys.executable, "-c", probe, url], check=False).returncode == 0


def _node_ready(cluster: RealCluster) -> bool:
    out = cluster.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
    if not out.strip():
        return False
    conditions = json.loads(out)["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _spawn(cluster: RealCluster, name: str, argv: Sequence[str]) -> None:
    cluster.daemons[name] = cluster.node.spawn(argv, cluster.log(name))


def start_real_cluster(
    workdir: Path | None = None,
    *,
    users: Mapping[str, Sequence[str]] | None = None,
    audit_users: Sequence[str] = (),
    die_with_parent: bool = True,
    apiserver_args: Sequence[str] = (),
    controller_manager_args: Sequence[str] = (),
) -> RealCluster:
    """Control plane + kwok nodes + the real node, images pushed; returns once the node is
    Ready and kube-proxy has programmed the ``kubernetes`` Service. ``apiserver_args`` and
    ``controller_manager_args`` are added to those components' flags (monitoring.py's)."""
    missing = missing_parts()
    if missing:
        raise NodeError(f"the real-node tier needs: {'; '.join(missing)}. {SETUP_HINT}")
    owns = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="kaip-node-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    node = node_namespace.create(workdir / "node", die_with_parent=die_with_parent)
    try:
        tainted = tuple(FakeNode(**{**n.__dict__, "taints": (FAKE_TAINT,)}) for n in DEFAULT_NODES)
        plane = start_cluster(
            workdir / "plane",
            users=users,
            nodes=tainted,
            audit_users=audit_users,
            die_with_parent=die_with_parent,
            address=node.host_ip,
            # Reach the kubelet (logs, exec) by the node's IP: no DNS knows "real-0".
            apiserver_args=["--kubelet-preferred-address-types=InternalIP", *apiserver_args],
            controller_manager_args=controller_manager_args,
        )
    except BaseException:
        node.destroy()
        raise
    tags = image_tags()
    layout = NodeLayout(
        workdir=workdir / "node",
        name=NODE_NAME,
        node_ip=node.node_ip,
        host_ip=node.host_ip,
        cgroup_root=node.cgroup_root,
        pause_image=f"{REGISTRY}/{tags['pause'].removeprefix('localhost/')}",
    )
    cluster = RealCluster(plane=plane, node=node, layout=layout)
    cluster.timings["control_plane"] = time.monotonic() - started
    steps = (_start_registry, _push_images, _start_containerd, _start_kubelet, _start_kube_proxy)
    try:
        for step in steps:
            started = time.monotonic()
            step(cluster)
            cluster.timings[step.__name__.lstrip("_")] = time.monotonic() - started
    except BaseException:
        cluster.stop(keep_logs=not owns)
        raise
    return cluster


def _start_registry(cluster: RealCluster) -> None:
    binary = registry_binary()
    assert binary is not None
    storage = (
        Path(os.environ.get("KAIP_IMAGES_CACHE", Path.home() / ".cache" / "kaip-images"))
        / "registry"
    )
    storage.mkdir(parents=True, exist_ok=True)
    config = cluster.layout.workdir / "registry.yaml"
    config.write_text(
        to_json(
            {
                "version": 0.1,
                "log": {"level": "warn", "accesslog": {"disabled": True}},
                "storage": {
                    "filesystem": {"rootdirectory": str(storage)},
                    "delete": {"enabled": True},
                },
                "http": {"addr": "127.0.0.1:5000"},
            }
        )
    )
    _spawn(cluster, "registry", [str(binary), "serve", str(config)])
    _wait(
        "the registry on the node's loopback",
        lambda: _http_in_node(cluster, "http://127.0.0.1:5000/v2/"),
        30,
        cluster,
    )


def _push_images(cluster: RealCluster) -> None:
    """Copy every image into the node's registry (layers it already holds are skipped)."""
    out = cluster.in_node([str(IMAGES_SCRIPT), "--push", REGISTRY], timeout=600)
    cluster.images = dict(line.split() for line in out.stdout.splitlines() if line.strip())


def _start_containerd(cluster: RealCluster) -> None:
    layout = cluster.layout
    layout.containerd_dir.mkdir(parents=True, exist_ok=True)
    layout.containerd_config.write_text(containerd_toml(layout))
    hosts = layout.registry_hosts_dir / REGISTRY
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text(registry_hosts_toml())
    layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (layout.cni_conf_dir / "10-kaip.conflist").write_text(to_json(cni_conflist()))
    _spawn(cluster, "containerd", ["containerd", "--config", str(layout.containerd_config)])
    socket = Path(f"/proc/{cluster.node.init_pid}/root{CONTAINERD_SOCKET}")
    _wait("containerd's socket", socket.exists, 60, cluster)


def _start_kubelet(cluster: RealCluster) -> None:
    layout, plane = cluster.layout, cluster.plane
    kubeconfig = layout.workdir / "kubelet.kubeconfig"
    write_kubeconfig(kubeconfig, plane.server, plane.ca_file, ADMIN, plane.token())
    layout.kubelet_config.write_text(to_json(kubelet_config(layout)))
    _spawn(
        cluster,
        "kubelet",
        [
            str(plane.bin_dir / "kubelet"),
            f"--config={layout.kubelet_config}",
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={layout.name}",
            f"--node-ip={layout.node_ip}",
            f"--root-dir={layout.kubelet_dir}",
            f"--cert-dir={layout.workdir / 'kubelet-pki'}",
            "--node-labels=kaip.dev/node=real",
            "--v=1",
        ],
    )
    _wait(f"node {layout.name} Ready", lambda: _node_ready(cluster), 120, cluster)


def _start_kube_proxy(cluster: RealCluster) -> None:
    layout, plane = cluster.layout, cluster.plane
    kubeconfig = layout.workdir / "kube-proxy.kubeconfig"
    write_kubeconfig(kubeconfig, plane.server, plane.ca_file, ADMIN, plane.token())
    layout.kube_proxy_config.write_text(to_json(kube_proxy_config(layout, kubeconfig)))
    _spawn(
        cluster,
        "kube-proxy",
        [str(plane.bin_dir / "kube-proxy"), f"--config={layout.kube_proxy_config}", "--v=1"],
    )

    def kubernetes_service_programmed() -> bool:
        rules = cluster.node.run(["iptables-save", "-t", "nat"], check=False).stdout
        return "default/kubernetes:https cluster IP" in rules

    _wait(
        "kube-proxy's rules for the kubernetes Service", kubernetes_service_programmed, 60, cluster
    )


# -- detached mode (make k8s-up NODE=real / make k8s-down) ---------------------------------------


def _up(state_dir: Path) -> int:
    state = state_dir / "state.json"
    if state.exists() and _still_running(json.loads(state.read_text())):
        print(f"already up (state in {state}); run `make k8s-down` first", file=sys.stderr)
        return 1
    if state.exists():
        print(f"nothing recorded in {state} runs any more (a reboot?): starting anew")
    if state_dir.exists():
        shutil.rmtree(state_dir)
    started = time.monotonic()
    cluster = start_real_cluster(state_dir.resolve(), die_with_parent=False)
    node = cluster.node
    state.write_text(
        json.dumps(
            {
                "kind": "real",
                "kubeconfig": str(cluster.plane.kubeconfig),
                "server": cluster.plane.server,
                "pids": cluster.plane.pids(),
                "node": {
                    "holder": node.holder.pid,
                    "init": node.init_pid,
                    "veth": node.veth,
                    "cgroup_root": node.cgroup_root,
                    "daemons": {n: p.pid for n, p in cluster.daemons.items()},
                },
                "images": cluster.images,
            },
            indent=2,
        )
        + "\n"
    )
    print(
        f"cluster with a real node up in {time.monotonic() - started:.0f}s: {cluster.plane.server}"
    )
    print(f"node {NODE_NAME} ({node.node_ip}); logs in {cluster.workdir / 'logs'}")
    for name, ref in cluster.images.items():
        print(f"image {name}: {ref}")
    print(f"export KUBECONFIG={cluster.plane.kubeconfig}")
    print(f"in the node's network: nsenter --target {node.init_pid} --net -- CMD")
    return 0


def _down(state_dir: Path) -> int:
    """Stop a detached real node; kube_harness.py's ``down`` then stops the control plane."""
    path = state_dir / "state.json"
    if not path.exists():
        return 0
    node = json.loads(path.read_text()).get("node")
    if not node:
        return 0
    # Only what is still this node's own is signalled: a recorded pid may have been reused.
    holder = _runs(node["holder"], "unshare")
    init = holder and _parent(node["init"]) == node["holder"]
    for pid in reversed(list(node["daemons"].values())):
        if init and _runs(pid, "nsenter", f"--target={node['init']}"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    time.sleep(2)
    for pid, ours in ((node["init"], init), (node["holder"], holder)):
        if ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    problems = node_namespace.remove_cgroups(node["cgroup_root"])
    if Path("/sys/class/net", node["veth"]).exists():
        subprocess.run(["ip", "link", "del", node["veth"]], capture_output=True)
    for problem in problems:
        print(f"could not undo: {problem}", file=sys.stderr)
    print(f"stopped node {NODE_NAME} and everything in its namespaces")
    return 1 if problems else 0


def _runs(pid: int, program: str, *args: str) -> bool:
    """True while ``pid`` is alive, runs ``program`` and has ``args`` among its arguments."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return Path(argv[0]).name == program and all(a in argv for a in args)


def _parent(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), None
    )


def _still_running(state: dict[str, Any]) -> bool:
    """Whether any process a detached cluster's state records is still that process."""
    node = state.get("node") or {}
    return any(_is_ours(pid, name) for name, pid in state.get("pids", {}).items()) or bool(
        node and _runs(node["holder"], "unshare")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=REPO_ROOT / ".kaip" / "k8s")
    args = parser.parse_args(argv)
    try:
        return _up(args.dir) if args.action == "up" else _down(args.dir)
    except HarnessError as exc:
        print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""A real Kubernetes control plane on loopback, without containers, for tests and humans.

Owns starting, probing and stopping the processes that ``tools/k8s/build.sh`` builds: etcd ->
kube-apiserver -> kube-controller-manager -> kube-scheduler -> kwok, each on a free 127.0.0.1
port, in one work directory, with static token authentication (an admin in ``system:masters``
plus whatever users a test declares) and an admin kubeconfig. Two tiers:

* :func:`start_api` — etcd + kube-apiserver: CRDs, server-side apply, dry-run, RBAC.
* :func:`start_cluster` — everything, with fake kwok nodes (CPU and GPU): Deployments become
  Running pods, the scheduler honours ``nvidia.com/gpu`` requests.

It never binds anything but 127.0.0.1 and never touches a real cluster. The pytest fixtures live
in ``conftest.py``; ``make k8s-up`` / ``make k8s-down`` run this file as a script::

    python tests/e2e_kube/kube_harness.py up --dir .kaip/k8s     # detached; prints kubeconfig
    python tests/e2e_kube/kube_harness.py down --dir .kaip/k8s
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KUBE_VERSION = "v1.35.4"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "k8s" / "build.sh"
# kwok v0.8.0 ships no built-in stages: without these it refuses to start.
KWOK_STAGES = Path(__file__).with_name("kwok-stages.yaml")
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
ADMIN = "admin"


class HarnessError(RuntimeError):
    """The control plane could not be started or did not become ready."""


def binary_dir() -> Path:
    """Where tools/k8s/build.sh puts the binaries (``KAIP_K8S_CACHE`` overrides)."""
    override = os.environ.get("KAIP_K8S_CACHE")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "kaip-k8s" / KUBE_VERSION


def missing_binaries(bin_dir: Path, needed: Iterable[str] = BINARIES) -> list[str]:
    return [b for b in needed if not os.access(bin_dir / b, os.X_OK)]


def cluster_crds(bin_dir: Path) -> list[Path]:
    """The CRD files build.sh fetched (Gateway API); the full cluster installs them."""
    return sorted(bin_dir.glob("crds/*/*.yaml"))


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- nodes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeNode:
    """A kwok-managed node: kwok makes it Ready and runs whatever the scheduler binds to it."""

    name: str
    cpu: str = "16"
    memory: str = "64Gi"
    pods: str = "110"
    gpus: int = 0
    gpu_product: str = "NVIDIA-H100-80GB-HBM3"
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Mapping[str, str], ...] = ()
    """Node taints (``{"key", "value", "effect"}``): a cluster with a real node taints its kwok
    nodes so pods land on the real one unless they ask otherwise."""

    def manifest(self) -> dict[str, Any]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "kwok-gpu" if self.gpus else "kwok-cpu",
            "type": "kwok",
        }
        if self.gpus:
            capacity[GPU_RESOURCE] = str(self.gpus)
            labels[GPU_PRODUCT_LABEL] = self.gpu_product
            labels["nvidia.com/gpu.count"] = str(self.gpus)
            labels["nvidia.com/gpu.present"] = "true"
        labels.update(self.labels)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {FAKE_NODE_ANNOTATION: "fake"},
            },
            "spec": {"taints": [dict(t) for t in self.taints]} if self.taints else {},
            "status": {"capacity": capacity, "allocatable": capacity},
        }


DEFAULT_NODES = (
    FakeNode("kwok-cpu-0"),
    FakeNode("kwok-cpu-1"),
    FakeNode("kwok-gpu-0", gpus=8),
)


# -- processes ---------------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGKILL the child when the process that started it dies (a crashed pytest)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class ControlPlane:
    """A running control plane: where it lives, how to reach it, and how to stop it."""

    workdir: Path
    bin_dir: Path
    server: str
    ca_file: Path
    tokens: dict[str, str]
    kubeconfig: Path
    components: list[Component] = field(default_factory=list)
    nodes: tuple[FakeNode, ...] = ()
    audit_log: Path | None = None
    """The apiserver's audit log (JSON lines) when users were audited at start."""
    _owns_workdir: bool = False

    # -- access --

    def token(self, user: str = ADMIN) -> str:
        return self.tokens[user]

    def kubeconfig_for(self, user: str, path: Path | None = None) -> Path:
        """A kubeconfig that authenticates as ``user`` (declared when the plane started)."""
        target = path or self.workdir / f"kubeconfig-{user}.yaml"
        write_kubeconfig(target, self.server, self.ca_file, user, self.tokens[user])
        return target

    def api_client(self, user: str = ADMIN) -> Any:
        """An official ``kubernetes`` client ApiClient for ``user``."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = str(self.ca_file)
        cfg.api_key = {"authorization": self.tokens[user]}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(cfg)

    def kubectl(self, *args: str, user: str = ADMIN, check: bool = True) -> str:
        out = subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig_for(user)), *args],
            capture_output=True,
            text=True,
            # A bound on a hang, not a timing check: applying the Gateway API CRDs took over 60 s
            # with the control plane at nice 19 beside a build (load ~16).
            timeout=300,
        )
        if check and out.returncode != 0:
            raise HarnessError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def audited_requests(self, user: str) -> Counter[tuple[str, str]]:
        """Requests ``user`` made so far, by (verb, resource), from the apiserver's audit log.

        Only users named in ``audit_users`` at start are logged. A request counts once (by its
        audit ID) whether its response completed or, for a watch still open, only started.
        """
        if self.audit_log is None:
            raise HarnessError("no audit log: start the plane with audit_users=[...]")
        seen: dict[str, tuple[str, str]] = {}
        for log in sorted(self.audit_log.parent.glob(self.audit_log.name + "*")):
            for line in log.read_text(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # the line the apiserver is writing right now
                if event.get("user", {}).get("username") != user:
                    continue
                ref = event.get("objectRef") or {}
                resource = ref.get("resource", event.get("requestURI", "?"))
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                seen[event["auditID"]] = (event.get("verb", "?"), resource)
        return Counter(seen.values())

    # -- lifecycle --

    def pids(self) -> dict[str, int]:
        return {c.name: c.process.pid for c in self.components}

    def check_alive(self) -> None:
        for c in self.components:
            code = c.process.poll()
            if code is not None:
                raise HarnessError(
                    f"{c.name} exited with code {code}; last lines of {c.log}:\n{c.log_tail()}"
                )

    def stop(self, keep_workdir: bool = False) -> None:
        """Stop the processes in reverse start order; remove the work dir unless asked."""
        for c in reversed(self.components):
            _terminate(c.process)
        self.components.clear()
        if keep_workdir:
            return
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:  # keep the logs, drop etcd's preallocated write-ahead log
            shutil.rmtree(self.workdir / "etcd", ignore_errors=True)


def _terminate(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _spawn(plane: ControlPlane, name: str, args: Sequence[str], die_with_parent: bool) -> Component:
    log = plane.workdir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(plane.bin_dir / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=plane.workdir,
            start_new_session=True,  # a Ctrl-C in the terminal reaches only the harness
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    component = Component(name, process, log)
    plane.components.append(component)
    return component


def _wait_for(
    plane: ControlPlane, what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        plane.check_alive()
        try:
            if probe():
                return
        except Exception as exc:  # a probe failing is the normal state until it passes
            last_error = f" (last error: {exc})"
        time.sleep(interval)
    logs = "\n".join(f"--- {c.name}: {c.log}\n{c.log_tail(15)}" for c in plane.components)
    raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}{last_error}\n{logs}")


def _http_ok(url: str, token: str | None = None, body: str | None = None) -> bool:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = None
    if url.startswith("https:"):
        # Only readiness probes skip verification: the CA file is not written yet when they start.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            text = response.read().decode(errors="replace")
            return response.status == 200 and (body is None or body in text)
    except (urllib.error.URLError, OSError):
        return False


# -- files -------------------------------------------------------------------------------------


def write_kubeconfig(path: Path, server: str, ca_file: Path, user: str, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kaip-test",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "kaip-test", "context": {"cluster": "kaip-test", "user": user}}],
        "current-context": "kaip-test",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is YAML, and every kubeconfig loader reads it.
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def _write_tokens(path: Path, users: Mapping[str, Sequence[str]]) -> dict[str, str]:
    tokens: dict[str, str] = {}
    lines = []
    for i, (user, groups) in enumerate(users.items()):
        token = secrets.token_hex(16)
        tokens[user] = token
        group_field = ",".join(groups)
        # token,user,uid,"group1,group2"
        lines.append(
            f'{token},{user},uid-{i},"{group_field}"' if groups else f"{token},{user},uid-{i}"
        )
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return tokens


def _write_service_account_key(path: Path) -> None:
    subprocess.run(
        ["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True
    )


# -- starting ----------------------------------------------------------------------------------


API_BINARIES = ("etcd", "kube-apiserver", "kubectl")


def _prepare(
    workdir: Path | None,
    bin_dir: Path | None,
    users: Mapping[str, Sequence[str]] | None,
    needed: Iterable[str],
    address: str = "127.0.0.1",
) -> tuple[ControlPlane, dict[str, int]]:
    bin_dir = bin_dir or binary_dir()
    missing = missing_binaries(bin_dir, needed)
    if "kwok" in needed and not cluster_crds(bin_dir):
        missing.append("crds/gateway-api")
    if missing:
        raise HarnessError(
            f"missing {', '.join(missing)} in {bin_dir}; run tools/k8s/build.sh to build the "
            "Kubernetes test control plane (cold: ~30 min on 2 cores, then cached)"
        )
    owns = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="kaip-k8s-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    all_users: dict[str, Sequence[str]] = {ADMIN: ["system:masters"]}
    all_users.update(users or {})
    tokens = _write_tokens(workdir / "tokens.csv", all_users)
    _write_service_account_key(workdir / "sa.key")
    ports = {
        "etcd": free_port(),
        "etcd-peer": free_port(),
        "apiserver": free_port(),
        "controller-manager": free_port(),
        "scheduler": free_port(),
        "kwok": free_port(),
    }
    server = f"https://{address}:{ports['apiserver']}"
    plane = ControlPlane(
        workdir=workdir,
        bin_dir=bin_dir,
        server=server,
        ca_file=workdir / "certs" / "apiserver.crt",
        tokens=tokens,
        kubeconfig=workdir / "kubeconfig.yaml",
        _owns_workdir=owns,
    )
    return plane, ports


def _start_etcd_and_apiserver(
    plane: ControlPlane,
    ports: dict[str, int],
    full: bool,
    die_with_parent: bool,
    service_cidr: str = "10.0.0.0/24",
    audit_users: Sequence[str] = (),
    address: str = "127.0.0.1",
    apiserver_args: Sequence[str] = (),
) -> None:
    etcd = f"http://127.0.0.1:{ports['etcd']}"
    peer = f"http://127.0.0.1:{ports['etcd-peer']}"
    _spawn(
        plane,
        "etcd",
        [
            f"--data-dir={plane.workdir / 'etcd'}",
            f"--listen-client-urls={etcd}",
            f"--advertise-client-urls={etcd}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        die_with_parent,
    )
    _wait_for(plane, "etcd /health", lambda: _http_ok(f"{etcd}/health", body='"true"'), 30)

    sa_key = plane.workdir / "sa.key"
    args = [
        f"--etcd-servers={etcd}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={ports['apiserver']}",
        f"--cert-dir={plane.ca_file.parent}",
        f"--service-cluster-ip-range={service_cidr}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={sa_key}",
        f"--service-account-signing-key-file={sa_key}",
        f"--token-auth-file={plane.workdir / 'tokens.csv'}",
        "--enable-priority-and-fairness=false",
        "--v=0",
    ]
    if not full:
        # Nothing would create the default ServiceAccount the admission plugin waits for.
        args.append("--disable-admission-plugins=ServiceAccount")
    if audit_users:
        args += _audit_args(plane, audit_users)
    args += apiserver_args
    _spawn(plane, "kube-apiserver", args, die_with_parent)
    _wait_for(
        plane,
        "kube-apiserver /readyz",
        lambda: _http_ok(f"{plane.server}/readyz", token=plane.token()),
        90,
    )
    write_kubeconfig(plane.kubeconfig, plane.server, plane.ca_file, ADMIN, plane.token())


def _audit_args(plane: ControlPlane, users: Sequence[str]) -> list[str]:
    """apiserver flags that log every request of ``users`` (metadata only) and nothing else."""
    policy = plane.workdir / "audit-policy.yaml"
    policy.write_text(
        json.dumps(
            {
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                "omitStages": ["RequestReceived"],
                "rules": [{"level": "Metadata", "users": list(users)}, {"level": "None"}],
            }
        )
    )
    plane.audit_log = plane.workdir / "logs" / "audit.log"
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={plane.audit_log}",
        "--audit-log-format=json",
        "--audit-log-mode=batch",
        "--audit-log-batch-max-wait=1s",
        "--audit-log-maxsize=0",
    ]


def start_api(
    workdir: Path | None = None,
    *,
    users: Mapping[str, Sequence[str]] | None = None,
    bin_dir: Path | None = None,
    die_with_parent: bool = True,
) -> ControlPlane:
    """etcd + kube-apiserver: enough for CRDs, server-side apply, dry-run and RBAC.

    ``users`` maps extra user names to their groups; each gets a token (``plane.token(user)``)
    and a kubeconfig (``plane.kubeconfig_for(user)``). The token file is read once at start.
    """
    plane, ports = _prepare(workdir, bin_dir, users, API_BINARIES)
    try:
        _start_etcd_and_apiserver(plane, ports, full=False, die_with_parent=die_with_parent)
    except BaseException:
        plane.stop()
        raise
    return plane


def start_cluster(
    workdir: Path | None = None,
    *,
    users: Mapping[str, Sequence[str]] | None = None,
    nodes: Iterable[FakeNode] = DEFAULT_NODES,
    bin_dir: Path | None = None,
    die_with_parent: bool = True,
    service_cidr: str = "10.0.0.0/24",
    pod_cidr: str = "10.0.0.1/24",
    audit_users: Sequence[str] = (),
    controller_manager_args: Sequence[str] = (),
    address: str = "127.0.0.1",
    apiserver_args: Sequence[str] = (),
) -> ControlPlane:
    """The whole control plane with fake kwok nodes and the Gateway API CRDs; returns once the
    nodes are Ready and the CRDs Established.

    The default CIDRs hold ~250 Services and pods; scale runs (bench/) pass larger ones.
    ``audit_users`` get every request audited (:meth:`ControlPlane.audited_requests`);
    ``controller_manager_args`` and ``apiserver_args`` are added last (a later flag wins).
    ``address`` is where the apiserver listens and what it advertises (the ``kubernetes``
    Service's endpoint): loopback unless real pods must reach it (tests/e2e_node); the other
    components stay on 127.0.0.1.
    """
    plane, ports = _prepare(workdir, bin_dir, users, BINARIES, address)
    try:
        _start_etcd_and_apiserver(
            plane,
            ports,
            full=True,
            die_with_parent=die_with_parent,
            service_cidr=service_cidr,
            audit_users=audit_users,
            address=address,
            apiserver_args=apiserver_args,
        )
        kubeconfig = str(plane.kubeconfig)
        delegated = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            # The defaults (20 and 50 requests/s) throttle a thousand Deployments for minutes;
            # clusters at that size raise them too.
            "--kube-api-qps=100",
            "--kube-api-burst=200",
        ]
        _spawn(
            plane,
            "kube-controller-manager",
            [
                *delegated,
                f"--secure-port={ports['controller-manager']}",
                f"--cert-dir={plane.workdir / 'certs-kcm'}",
                f"--service-account-private-key-file={plane.workdir / 'sa.key'}",
                f"--root-ca-file={plane.ca_file}",
                "--use-service-account-credentials=false",
                # Fast reaction beats realism in tests.
                "--concurrent-deployment-syncs=10",
                "--node-monitor-grace-period=40s",
                *controller_manager_args,
            ],
            die_with_parent,
        )
        _spawn(
            plane,
            "kube-scheduler",
            [
                *delegated,
                f"--secure-port={ports['scheduler']}",
                f"--cert-dir={plane.workdir / 'certs-scheduler'}",
            ],
            die_with_parent,
        )
        _spawn(
            plane,
            "kwok",
            [
                f"--config={KWOK_STAGES}",
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                f"--cidr={pod_cidr}",
                "--node-ip=10.0.0.1",
                f"--server-address=127.0.0.1:{ports['kwok']}",
            ],
            die_with_parent,
        )
        for name in ("controller-manager", "scheduler"):
            url = f"https://127.0.0.1:{ports[name]}/healthz"
            _wait_for(plane, f"kube-{name} /healthz", lambda u=url: _http_ok(u), 60)  # type: ignore[misc]
        crds = cluster_crds(plane.bin_dir)
        plane.kubectl("apply", "--server-side", *(f"--filename={f}" for f in crds))
        plane.nodes = tuple(nodes)
        _create_nodes(plane)
        _wait_for(plane, "fake nodes Ready", lambda: _nodes_ready(plane), 60, interval=0.5)
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        _wait_for(
            plane,
            "the default ServiceAccount (controller-manager working)",
            lambda: _default_service_account_exists(plane),
            60,
            interval=0.5,
        )
    except BaseException:
        plane.stop()
        raise
    return plane


def _create_nodes(plane: ControlPlane) -> None:
    from kubernetes import client

    with plane.api_client() as api:
        core = client.CoreV1Api(api)
        for node in plane.nodes:
            manifest = node.manifest()
            created = core.create_node(manifest)
            # The status given on create is dropped; capacity lives in the status subresource.
            core.patch_node_status(created.metadata.name, {"status": manifest["status"]})


def _nodes_ready(plane: ControlPlane) -> bool:
    from kubernetes import client

    with plane.api_client() as api:
        nodes = client.CoreV1Api(api).list_node().items
    ready = {
        n.metadata.name
        for n in nodes
        if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
    }
    return {n.name for n in plane.nodes} <= ready


def _default_service_account_exists(plane: ControlPlane) -> bool:
    from kubernetes import client

    with plane.api_client() as api:
        accounts = client.CoreV1Api(api).list_namespaced_service_account("default").items
    return any(a.metadata.name == "default" for a in accounts)


# -- detached mode (make k8s-up / k8s-down) ----------------------------------------------------


def _up(state_dir: Path) -> int:
    state = state_dir / "state.json"
    if state.exists():
        print(f"already up (state in {state}); run `make k8s-down` first", file=sys.stderr)
        return 1
    if state_dir.exists():
        shutil.rmtree(state_dir)
    started = time.monotonic()
    plane = start_cluster(state_dir.resolve(), die_with_parent=False)
    state.write_text(
        json.dumps(
            {"kubeconfig": str(plane.kubeconfig), "server": plane.server, "pids": plane.pids()},
            indent=2,
        )
        + "\n"
    )
    (state_dir / "pids").write_text(
        "".join(f"{name} {pid}\n" for name, pid in plane.pids().items())
    )
    print(f"control plane up in {time.monotonic() - started:.0f}s: {plane.server}")
    print(f"nodes: {', '.join(n.name for n in plane.nodes)}; logs in {state_dir / 'logs'}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    print(f"kubectl: {plane.bin_dir / 'kubectl'}")
    return 0


def _down(state_dir: Path) -> int:
    state = state_dir / "state.json"
    if not state.exists():
        print(f"nothing to stop ({state} does not exist)")
        return 0
    pids: dict[str, int] = json.loads(state.read_text())["pids"]
    for name, pid in reversed(list(pids.items())):
        if not _is_ours(pid, name):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _is_ours(pid, name):
            time.sleep(0.1)
        if _is_ours(pid, name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print(f"stopped {name} ({pid})")
    shutil.rmtree(state_dir, ignore_errors=True)
    return 0


def _is_ours(pid: int, name: str) -> bool:
    """True while ``pid`` is alive and still runs ``name`` (a pid may be reused after exit)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    argv0 = cmdline.split(b"\0", 1)[0].decode(errors="replace")
    return Path(argv0).name == name


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

"""The namespaces a real test node lives in, and leaving the host as it was afterwards.

Owns one node's sandbox: a new pid, mount and network namespace (``unshare``), linked to the
host by a veth pair on a private /30; a cgroup under which every pod's cgroups are made; and the
teardown that undoes all of it. Never runs a Kubernetes daemon itself (node_harness.py does,
through :meth:`NodeNamespace.spawn`).

What stays inside, so the host keeps nothing:

* **processes**: the namespace's pid 1 is a small reaper; when it dies the kernel kills every
  process left in the namespace (containerd's shims, the containers). ``unshare --kill-child``
  kills it when the harness dies.
* **mounts**: the mount namespace is private. It gets its own ``/run`` (containerd's state and
  shim sockets, runc's state, pod network namespaces, the iptables lock), ``/var/lib`` (CNI's
  cache and IP allocations), ``/var/log`` (pod logs) and ``/proc``; the kubelet's bind mounts and
  containerd's overlay mounts vanish with it.
* **kernel settings**: the sysctls the kubelet insists on (``KERNEL_DEFAULTS``) are files bound
  over their ``/proc/sys`` entries in the node's own ``/proc``, so it never writes the host's.
* **network**: bridge, pod veths, routes and every iptables rule (kube-proxy's, CNI's NAT) are in
  the node's network namespace; the host gets one veth (deleted at teardown).
* **cgroups**: the one place shared with the host. Pods' cgroups go under ``/kaip-node-<id>`` in
  each hierarchy (the kubelet's ``cgroupRoot``); teardown kills what is left there and removes
  those directories.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node_config import KERNEL_DEFAULTS

CGROUP_FS = Path("/sys/fs/cgroup")
LINK_NET = ipaddress.ip_network("172.30.0.0/16")
"""The node's /30 link to the host is drawn from here, avoiding any network the host uses."""


class NodeNamespaceError(RuntimeError):
    """The node's namespaces could not be made."""


# The namespace's pid 1: mounts the node's private directories, says it is ready, then reaps
# orphans (containerd's shims are reparented to it) until it is killed.
_INIT = r"""
import os, subprocess, sys, time
work = sys.argv[1]
def mount(*args):
    subprocess.run(["mount", *args], check=True)
mount("-t", "tmpfs", "-o", "mode=0755,size=512m", "kaip-node-run", "/run")
mount("--bind", work + "/var-lib", "/var/lib")
mount("--bind", work + "/var-log", "/var/log")
for name in sorted(os.listdir(work + "/sysctl")):
    mount("--bind", work + "/sysctl/" + name, "/proc/sys/" + name.replace(".", "/"))
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
open(work + "/ready", "w").close()
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(1)
"""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _ip(*args: str, netns_pid: int | None = None) -> None:
    argv = ["ip", *args]
    if netns_pid is not None:
        argv = ["nsenter", f"--target={netns_pid}", "--net", "--", *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise NodeNamespaceError(f"{' '.join(argv)}: {out.stderr.strip()}")


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True, text=True
    ).stdout
    out += subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    nets = []
    for word in out.split():
        with contextlib.suppress(ValueError):
            if "/" in word or word.count(".") == 3:
                nets.append(ipaddress.ip_network(word, strict=False))
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def _free_link_net() -> ipaddress.IPv4Network:
    used = _used_networks()
    subnets = list(LINK_NET.subnets(new_prefix=30))
    for _ in range(200):
        candidate = random.choice(subnets)
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise NodeNamespaceError(f"no free /30 in {LINK_NET} for the node's link to the host")


@dataclass
class NodeNamespace:
    """One node's namespaces (see the module docstring), their link and their cgroup."""

    workdir: Path
    holder: subprocess.Popen[bytes]
    init_pid: int
    """pid 1 of the node's pid namespace, as the host sees it: the target of nsenter."""
    veth: str
    host_ip: str
    node_ip: str
    cgroup_root: str
    spawned: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stop_seconds: dict[str, float] = field(default_factory=dict)

    # -- running things inside --

    def enter(self, *, net_only: bool = False) -> list[str]:
        """The nsenter prefix: every namespace of the node, or only its network."""
        if net_only:
            return ["nsenter", f"--target={self.init_pid}", "--net", "--"]
        return ["nsenter", f"--target={self.init_pid}", "--pid", "--mount", "--net", "--"]

    def spawn(
        self, argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a daemon in the node; stop it with :meth:`stop_process`.

        nsenter forks to enter the pid namespace, so the daemon is nsenter's child: both share
        a new process group, and signals go to that group.
        """
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*self.enter(), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self.spawned.append(process)
        return process

    def run(
        self,
        argv: Sequence[str],
        *,
        net_only: bool = True,
        timeout: float = 120,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the node's network (and, unless ``net_only``, its other namespaces)."""
        out = subprocess.run(
            [*self.enter(net_only=net_only), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and out.returncode != 0:
            raise NodeNamespaceError(
                f"{' '.join(argv)} in the node failed ({out.returncode}): "
                f"{(out.stderr or out.stdout).strip()[-2000:]}"
            )
        return out

    @staticmethod
    def stop_process(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
        """SIGTERM the process group of a spawned daemon, SIGKILL it after ``grace`` seconds."""
        pgid = process.pid
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                process.poll()
                if not _group_alive(pgid):
                    return
                time.sleep(0.1)

    # -- teardown --

    def destroy(self) -> list[str]:
        """Stop everything and undo every change to the host; returns what could not be undone."""
        problems: list[str] = []
        for process in reversed(self.spawned):
            started = time.monotonic()
            self.stop_process(process)
            self.stop_seconds[" ".join(str(a) for a in process.args[5:6])] = (
                time.monotonic() - started
            )
        self.spawned.clear()
        # pid 1 dies -> the kernel kills every process left in the namespace.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.init_pid, signal.SIGKILL)
        try:
            self.holder.wait(30)
        except subprocess.TimeoutExpired:
            self.holder.kill()
            self.holder.wait(10)
        problems += remove_cgroups(self.cgroup_root)
        if _link_exists(self.veth):
            out = subprocess.run(["ip", "link", "del", self.veth], capture_output=True, text=True)
            if out.returncode != 0 and _link_exists(self.veth):
                problems.append(f"veth {self.veth}: {out.stderr.strip()}")
        return problems


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A group of zombies only (our own unreaped children) counts as gone.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, named ones and the unified v2)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] in ("cgroup", "cgroup2"):
            found.append(Path(parts[1]))
    return found


def remove_cgroups(root: str, timeout: float = 30) -> list[str]:
    """Kill what is left in ``root`` (in every hierarchy) and remove it, deepest first."""
    problems = []
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / root.lstrip("/")
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for directory in [*dirs, top]:
            deadline = time.monotonic() + timeout
            while True:
                with contextlib.suppress(OSError):
                    for pid in (directory / "cgroup.procs").read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        problems.append(f"cgroup {directory}: {exc}")
                        break
                    time.sleep(0.2)
    return problems


def create(workdir: Path, *, die_with_parent: bool = True) -> NodeNamespace:
    """Make the node's namespaces and its link to the host; returns once they are ready."""
    for tool in ("unshare", "nsenter", "ip", "mount"):
        if shutil.which(tool) is None:
            raise NodeNamespaceError(f"{tool} is missing (Debian: util-linux, iproute2, mount)")
    if os.geteuid() != 0:
        raise NodeNamespaceError("a real node needs root (namespaces, mounts, cgroups)")
    workdir.mkdir(parents=True, exist_ok=True)
    for sub in ("var-lib", "var-log", "sysctl"):
        (workdir / sub).mkdir(exist_ok=True)
    for name, value in KERNEL_DEFAULTS.items():
        (workdir / "sysctl" / name.replace("/", ".")).write_text(value + "\n")
    ident = secrets.token_hex(3)
    holder = subprocess.Popen(
        [
            "unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount", "--net",
            "--propagation", "private", "--", sys.executable, "-c", _INIT, str(workdir),
        ],
        stdin=subprocess.DEVNULL,
        stdout=(workdir / "init.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent if die_with_parent else None,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (workdir / "ready").exists():
        if holder.poll() is not None or time.monotonic() > deadline:
            holder.kill()
            log = (workdir / "init.log").read_text(errors="replace")[-2000:]
            raise NodeNamespaceError(f"the node's namespaces did not come up:\n{log}")
        time.sleep(0.05)
    children = Path(f"/proc/{holder.pid}/task/{holder.pid}/children").read_text().split()
    init_pid = int(children[0])
    link = _free_link_net()
    host_ip, node_ip = (str(h) for h in link.hosts())
    veth = f"kaipn{ident}"
    namespace = NodeNamespace(
        workdir=workdir,
        holder=holder,
        init_pid=init_pid,
        veth=veth,
        host_ip=host_ip,
        node_ip=node_ip,
        cgroup_root=f"/kaip-node-{ident}",
    )
    try:
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(init_pid))
        _ip("addr", "add", f"{host_ip}/30", "dev", veth)
        _ip("link", "set", veth, "up")
        _ip("addr", "add", f"{node_ip}/30", "dev", "eth0", netns_pid=init_pid)
        _ip("link", "set", "eth0", "up", netns_pid=init_pid)
        _ip("route", "add", "default", "via", host_ip, netns_pid=init_pid)
    except BaseException:
        namespace.destroy()
        raise
    return namespace

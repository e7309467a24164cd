"""A real Prometheus (Debian's binary) on 127.0.0.1 scraping one target every second.

For the PromQL analysis gates: :func:`prometheus` starts it with a static scrape job for the
gateway's ``/metrics`` (and one for replicas' when given), waits until it is ready and stops it
(and removes nothing but its own temporary data) when the block ends.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

PROMETHEUS = Path("/usr/bin/prometheus")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def prometheus(
    workdir: Path,
    target: str,
    replicas: Sequence[str] = (),
    replica_labels: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Prometheus scraping ``http://TARGET/metrics`` (job ``kaip-gateway``) and each of
    ``replicas`` (``HOST:PORT``, job ``kaip-replicas``, with ``replica_labels`` as target labels,
    as a PodMonitor's relabelings add them) every second; yields its URL."""
    if not PROMETHEUS.exists():
        raise AssertionError(f"{PROMETHEUS} is missing: run tools/setup.sh (component prometheus)")
    work = workdir / "prometheus"
    (work / "data").mkdir(parents=True, exist_ok=True)
    jobs: list[dict[str, object]] = [
        {"job_name": "kaip-gateway", "scrape_timeout": "900ms",
         "static_configs": [{"targets": [target]}]},
    ]  # fmt: skip
    if replicas:
        static = {"targets": list(replicas), "labels": dict(replica_labels or {})}
        jobs.append({"job_name": "kaip-replicas", "scrape_timeout": "900ms",
                     "static_configs": [static]})  # fmt: skip
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": jobs,
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    address = f"127.0.0.1:{_free_port()}"
    with (work / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                str(PROMETHEUS), f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address={address}",
                "--log.level=warn",
            ],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://{address}"

    def ready() -> bool:
        return httpx.get(f"{url}/-/ready", timeout=5, trust_env=False).status_code == 200

    with serving(process, ready, work / "prometheus.log", f"Prometheus at {url}", 120):
        yield url


@contextmanager
def serving(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path, what: str, limit: float
) -> Iterator[None]:
    """Wait until ``ready()`` (an HTTP error counts as not yet; the process exiting fails with
    its ``log``), give the block the running ``process``, then stop it (terminate, then kill)."""
    try:
        deadline = time.monotonic() + limit
        while True:
            if process.poll() is not None:
                raise AssertionError(log.read_text())
            try:
                if ready():
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not ready in {limit:.0f}s")
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""kaip's images as built by ``make images`` (tools/images/build.sh): what runs, as whom, on what.

Read from buildah's storage (each image mounted read-only for a moment), so these hold for the
exact bytes the real node pulls: non-root user 65532, the entrypoints the chart and the renderer
expect, CPython 3.11 from the pinned Debian base, no compiler, no pip, nothing writable baked in.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_harness import IMAGES_SCRIPT, image_tags

CACHE = Path(os.environ.get("KAIP_IMAGES_CACHE", Path.home() / ".cache" / "kaip-images"))
BUILDAH = [
    "buildah", "--root", str(CACHE / "storage"), "--runroot", str(CACHE / "run"),
    "--storage-driver", "overlay",
]  # fmt: skip
COMPILERS = ("usr/bin/gcc", "usr/bin/cc", "usr/bin/c++", "usr/bin/x86_64-linux-gnu-gcc-12")


@pytest.fixture(scope="module")
def tags() -> dict[str, str]:
    if subprocess.run([str(IMAGES_SCRIPT), "--check"], capture_output=True).returncode != 0:
        pytest.fail("kaip's images are not built: run tools/setup.sh (or make images)")
    return image_tags()


def inspect(tag: str) -> dict[str, Any]:
    out = subprocess.run([*BUILDAH, "inspect", "--type", "image", tag], capture_output=True)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout)["OCIv1"]["config"])


class Mounted:
    def __init__(self, tag: str) -> None:
        self.container = subprocess.run(
            [*BUILDAH, "from", "--pull-never", tag], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.root = Path(
            subprocess.run(
                [*BUILDAH, "mount", self.container], capture_output=True, text=True, check=True
            ).stdout.strip()
        )

    def close(self) -> None:
        subprocess.run([*BUILDAH, "rm", self.container], capture_output=True)


@pytest.fixture(scope="module")
def mounted(tags: dict[str, str]) -> Iterator[dict[str, Path]]:
    opened = {name: Mounted(tags[name]) for name in ("server", "operator", "digits-ui")}
    try:
        yield {name: m.root for name, m in opened.items()}
    finally:
        for m in opened.values():
            m.close()


@pytest.mark.parametrize(
    ("name", "entrypoint"),
    [
        ("server", ["python", "-m", "kaip.serving"]),
        ("operator", ["kaip", "operator"]),
    ],
)
def test_kaip_images_run_their_command_as_65532(
    tags: dict[str, str], name: str, entrypoint: list[str]
) -> None:
    config = inspect(tags[name])
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == entrypoint
    assert "HOME=/tmp" in config["Env"], "pods mount an emptyDir on /tmp; the root is read-only"


def test_the_app_image_listens_on_every_interface_as_65532(tags: dict[str, str]) -> None:
    config = inspect(tags["digits-ui"])
    assert config["User"] == "65532:65532"
    assert config["Cmd"] == ["python", "/app/app.py"]
    assert "HOST=0.0.0.0" in config["Env"]


def test_the_pause_image_is_one_static_binary(tags: dict[str, str]) -> None:
    config = inspect(tags["pause"])
    assert config["Entrypoint"] == ["/pause"]
    assert config["User"] == "65535:65535"


def test_no_compiler_no_pip_and_python_3_11(mounted: dict[str, Path]) -> None:
    for name, root in mounted.items():
        present = [c for c in COMPILERS if (root / c).exists()]
        assert not present, f"{name} image has a compiler: {present}"
        assert (root / "usr/bin/python3.11").exists(), f"{name} image lacks CPython 3.11"
    for name in ("server", "operator"):
        assert not list((mounted[name] / "opt/kaip/bin").glob("pip*")), f"{name} keeps pip"
        site = mounted[name] / "opt/kaip/lib/python3.11/site-packages"
        assert (site / "kaip").is_dir()
    assert (mounted["server"] / "opt/kaip/lib/python3.11/site-packages/sklearn").is_dir()
    assert not (mounted["operator"] / "opt/kaip/lib/python3.11/site-packages/sklearn").exists()


def test_the_artifact_directory_belongs_to_the_pod_user(mounted: dict[str, Path]) -> None:
    artifacts = mounted["server"] / "var/lib/kaip/artifacts"
    assert artifacts.is_dir()
    assert (artifacts.stat().st_uid, artifacts.stat().st_gid) == (65532, 65532)

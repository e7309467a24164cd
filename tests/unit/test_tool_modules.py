"""How the test tools are built. The Go wrapper modules that build them (tools/helm,
tools/k8s/node, tools/prometheus-adapter, tools/kueue, and tools/otelcol but for the OpenTelemetry
Go SDK it needs newer) resolve every module they share with the control plane's (tools/k8s/kube)
to the same version: one Go build cache then compiles those
packages once for all of them, where a drifted version would silently make a cold `make test`
compile them twice (helm alone took 30 min under load before they were aligned,
prometheus-adapter 65 min). And the setup scripts hold no pipefail race."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TOOLS = Path(__file__).parents[2] / "tools"
CONTROL_PLANE = TOOLS / "k8s" / "kube" / "go.mod"

REQUIRE = re.compile(r"^\s*(?:require\s+)?(\S+)\s+(v\S+)(?:\s+//.*)?$")
REPLACE = re.compile(r"^\s*(?:replace\s+)?(\S+)(?:\s+v\S+)?\s+=>\s+(\S+)\s+(v\S+)\s*$")


def resolved(go_mod: Path) -> dict[str, str]:
    """Module path -> the version a build uses: the replacement's where one is given."""
    required: dict[str, str] = {}
    replaced: dict[str, str] = {}
    block = ""
    for line in go_mod.read_text().splitlines():
        line = line.split("//", 1)[0].rstrip() if "=>" in line else line
        if line.startswith(("require (", "replace (", "tool (")):
            block = line.split()[0]
            continue
        if line.strip() == ")":
            block = ""
            continue
        if (block == "replace" or line.startswith("replace ")) and (hit := REPLACE.match(line)):
            if hit[1] == hit[2]:  # a module pinned to another version of itself
                replaced[hit[1]] = hit[3]
        elif (block == "require" or line.startswith("require ")) and (hit := REQUIRE.match(line)):
            required[hit[1]] = hit[2]
    return required | {path: v for path, v in replaced.items() if path in required}


def test_the_parser_reads_requires_and_replacements() -> None:
    kube = resolved(CONTROL_PLANE)
    assert kube["k8s.io/kubernetes"].startswith("v1.")
    assert kube["k8s.io/client-go"].startswith("v0.")  # v0.0.0 in require, the tag in replace
    assert kube["k8s.io/client-go"] != "v0.0.0"


@pytest.mark.parametrize("tool", ["helm", "k8s/node", "prometheus-adapter", "kueue"])
def test_a_tool_module_shares_the_control_planes_versions(tool: str) -> None:
    kube = resolved(CONTROL_PLANE)
    mine = resolved(TOOLS / tool / "go.mod")
    shared = sorted(set(kube) & set(mine))
    assert len(shared) > 20, f"tools/{tool}/go.mod shares almost nothing with the control plane"
    drifted = [f"{m}: {mine[m]} (control plane {kube[m]})" for m in shared if mine[m] != kube[m]]
    assert not drifted, (
        f"tools/{tool}/go.mod resolves shared modules to other versions than "
        "tools/k8s/kube/go.mod; pin them with a replace directive:\n" + "\n".join(drifted)
    )


# The OpenTelemetry Collector needs a newer OpenTelemetry Go SDK (and what moves with it) than
# Kubernetes 1.35 pins: with the control plane's it does not compile. Those alone may differ.
OTELCOL_NEWER = re.compile(
    r"^(go\.opentelemetry\.io/(otel|contrib|proto/otlp)\b"
    r"|github\.com/grpc-ecosystem/grpc-gateway/)"
)


def test_the_collectors_module_shares_the_control_planes_versions_but_the_otel_sdk() -> None:
    kube = resolved(CONTROL_PLANE)
    mine = resolved(TOOLS / "otelcol" / "go.mod")
    shared = sorted(set(kube) & set(mine))
    for module in ("google.golang.org/grpc", "google.golang.org/protobuf", "golang.org/x/net"):
        assert module in shared and mine[module] == kube[module], module
    drifted = [
        f"{m}: {mine[m]} (control plane {kube[m]})"
        for m in shared
        if mine[m] != kube[m] and not OTELCOL_NEWER.match(m)
    ]
    assert not drifted, (
        "tools/otelcol/go.mod resolves shared modules to other versions than "
        "tools/k8s/kube/go.mod; pin them with a replace directive:\n" + "\n".join(drifted)
    )


def test_no_setup_script_pipes_into_head_under_pipefail() -> None:
    """`cmd | head -1` under `set -o pipefail` fails with 141 whenever head exits while cmd still
    writes: a race that once failed a whole cold build on its last line (etcd --version)."""
    offenders = [
        f"{script.relative_to(TOOLS.parent)}:{number}: {line.strip()}"
        for script in sorted(TOOLS.rglob("*.sh"))
        if "pipefail" in (text := script.read_text())
        for number, line in enumerate(text.splitlines(), 1)
        if re.search(r"\|\s*head\b", line) and not line.lstrip().startswith("#")
    ]
    assert not offenders, "use `sed -n 1p` (reads to the end) instead of head:\n" + "\n".join(
        offenders
    )

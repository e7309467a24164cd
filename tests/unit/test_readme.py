"""The README's spec tour is true: its YAML validates, its sample output is what kaip prints,
and its `kaip` commands run."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from kaip.spec import load_text

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
KAIP = Path(sys.executable).with_name("kaip")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_every_full_yaml_example_is_a_valid_spec() -> None:
    examples = [b for b in _blocks("yaml") if "kind:" in b]
    assert examples
    for text in examples:
        assert load_text(text, "README.md").resources


def test_the_annotated_quickstart_matches_the_example_where_it_shows_a_field() -> None:
    (tour,) = [b for b in _blocks("yaml") if "kind: Model" in b and "name: digits" in b]
    shown = {r.metadata.name: r for r in load_text(tour).resources}
    real = {
        r.metadata.name: r
        for r in load_text((ROOT / "examples/quickstart/kaip.yaml").read_text()).resources
    }
    assert shown.keys() == real.keys()
    for name, resource in shown.items():
        for field in ("owner", "scaling", "rollout"):
            assert getattr(resource.spec, field) == getattr(real[name].spec, field), field


def test_sample_problems_are_what_kaip_prints() -> None:
    (sample,) = [b for b in _blocks("text") if ".yaml:" in b]
    for line in sample.splitlines():
        name = line.split(":", 1)[0].removesuffix(".yaml")
        expected = ROOT / "tests/spec_corpus/bad" / f"{name}.expected"
        assert line in expected.read_text().splitlines()


SPEC_COMMANDS = [
    line.split("#")[0].split("|")[0].split(">")[0].strip()
    for block in _blocks("sh")
    for line in block.splitlines()
    if line.startswith(("kaip validate", "kaip schema", "kaip crd"))
]


def test_readme_shows_the_spec_commands() -> None:
    assert {c.split()[1] for c in SPEC_COMMANDS} == {"validate", "schema", "crd"}


@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_readme_spec_commands_run(command: str, tmp_path: Path) -> None:
    (tmp_path / "kaip.yaml").write_text((ROOT / "examples/quickstart/kaip.yaml").read_text())
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    result = subprocess.run(
        [str(KAIP), *shlex.split(command)[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,  # a bound on a hang, not a timing check: a busy machine is slow
        check=False,
    )
    assert result.returncode == 0, (command, result.stderr)
    assert result.stdout

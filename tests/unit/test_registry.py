"""kaip's embedded model registry against a real SQLite file and a real artifact store."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from kaip.errors import RegistryError
from kaip.registry import EmbeddedRegistry, Registration, RunStore, split_reference
from kaip.registry.backends import check_scheme, open_registry
from kaip.registry.database import MIGRATIONS, SCHEMA_VERSION
from kaip.settings import RegistrySettings
from kaip.spec.kinds import registry_reference


def artifact(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / "work" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_versions_number_from_one_and_resolve_by_number_latest_and_alias(tmp_path: Path) -> None:
    registry = EmbeddedRegistry.open(tmp_path / ".kaip")
    registration = Registration(
        "digits",
        artifact(tmp_path, "a.joblib", b"one"),
        "sklearn",
        metrics={"accuracy": 0.96},
        params={"C": "1.0"},
        job="train",
        run_id=7,
        source_commit="abc",
    )
    first = registry.register(registration)
    second = registry.register(
        Registration("digits", artifact(tmp_path, "b.joblib", b"two"), "sklearn")
    )
    assert (first.version, second.version) == (1, 2)
    assert first.reference == "registry://digits@1"
    assert first.digest == "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
    assert (first.size, first.metrics, first.params) == (3, {"accuracy": 0.96}, {"C": "1.0"})
    assert (first.job, first.run_id, first.source_commit) == ("train", 7, "abc")
    assert registry.resolve("digits", "latest").version == 2
    registry.set_alias("digits", "champion", 1)
    assert registry.resolve("digits", "champion").version == 1
    assert registry.resolve("digits", "1").aliases == ("champion",)
    registry.set_alias("digits", "champion", 2)  # an alias moves
    assert registry.resolve("digits", "champion").version == 2
    stored = registry.local_path(second, tmp_path / "cache")
    assert stored.read_bytes() == b"two" and stored.name == "b.joblib"


def test_same_bytes_are_stored_once_and_never_rewritten(tmp_path: Path) -> None:
    registry = EmbeddedRegistry.open(tmp_path / ".kaip")
    one = registry.register(Registration("m", artifact(tmp_path, "x.onnx", b"same"), "onnx"))
    two = registry.register(Registration("m", artifact(tmp_path, "x.onnx", b"same"), "onnx"))
    assert one.storage_uri == two.storage_uri and (one.version, two.version) == (1, 2)


def test_unknown_names_versions_and_aliases_say_what_exists(tmp_path: Path) -> None:
    registry = EmbeddedRegistry.open(tmp_path / ".kaip")
    with pytest.raises(RegistryError, match=r"no versions for model 'ghost'.*none yet"):
        registry.resolve("ghost", "latest")
    registry.register(Registration("m", artifact(tmp_path, "f", b"1"), "onnx"))
    with pytest.raises(RegistryError, match=r"no version 5 for model 'm' \(versions 1..1\)"):
        registry.resolve("m", "5")
    with pytest.raises(RegistryError, match=r"no alias 'prod'"):
        registry.resolve("m", "prod")
    with pytest.raises(RegistryError, match="cannot be an alias"):
        registry.set_alias("m", "latest", 1)
    with pytest.raises(RegistryError, match="no version 9"):
        registry.set_alias("m", "prod", 9)
    with pytest.raises(RegistryError, match="is a directory"):
        registry.register(Registration("m", tmp_path, "onnx"))
    assert split_reference("m") == ("m", "latest")
    assert split_reference("m@champion") == ("m", "champion")


def test_the_registry_is_private_to_its_owner(tmp_path: Path) -> None:
    state = tmp_path / ".kaip"
    registry = EmbeddedRegistry.open(state)
    version = registry.register(Registration("m", artifact(tmp_path, "f", b"1"), "onnx"))
    stored = registry.local_path(version, tmp_path)
    for path in (state, state / "registry", stored.parent, stored.parent.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (state / "registry.db", stored):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_concurrent_registrations_from_two_connections_get_distinct_numbers(
    tmp_path: Path,
) -> None:
    state = tmp_path / ".kaip"
    EmbeddedRegistry.open(state).close()
    numbers: list[int] = []
    lock = threading.Lock()

    def register_many(worker: int) -> None:
        registry = EmbeddedRegistry.open(state)  # its own connection, as kaip train has
        for i in range(10):
            path = artifact(tmp_path, f"w{worker}-{i}", f"{worker}-{i}".encode())
            version = registry.register(Registration("m", path, "onnx"))
            with lock:
                numbers.append(version.version)
        registry.close()

    threads = [threading.Thread(target=register_many, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(numbers) == list(range(1, 31))


def test_runs_record_attempts_reports_and_the_version_they_made(tmp_path: Path) -> None:
    registry = EmbeddedRegistry.open(tmp_path / ".kaip")
    runs = RunStore(registry.db)
    run = runs.start(job="train", revision="abc", spec_path="/s.yaml", max_retries=2,
                     log_path=str(tmp_path / "train-{run}.log"), checkpoint_dir=None,
                     commit_sha="c0ffee")  # fmt: skip
    assert run.log_path == str(tmp_path / f"train-{run.id}.log") and run.status == "running"
    runs.update(run.id, attempt=2, metrics={"accuracy": 0.9}, status="succeeded",
                version_name="m", version=1)  # fmt: skip
    again = runs.latest("train", "abc")
    assert again is not None
    assert (again.attempt, again.metrics, again.version) == (2, {"accuracy": 0.9}, 1)
    assert runs.latest("train", "other") is None
    assert [r.id for r in runs.list()] == [run.id]
    with pytest.raises(ValueError, match="no column"):
        runs.update(run.id, **{"status = 'x'; --": 1})
    assert os.path.exists(tmp_path / ".kaip" / "registry.db")


def test_a_registry_of_schema_1_keeps_its_runs_and_gains_the_start_ticks(
    tmp_path: Path,
) -> None:
    """A run a kaip of schema 1 left running keeps its pid and command line (still compared when
    no start time is recorded); the upgrade adds ``start_ticks``."""
    state = tmp_path / ".kaip"
    state.mkdir()
    old = sqlite3.connect(state / "registry.db")
    old.executescript(f"{MIGRATIONS[0]}; PRAGMA user_version = 1;")
    old.execute(
        "INSERT INTO runs (job, revision, spec_path, status, max_retries, started_at, updated_at,"
        " log_path, pid, cmdline) VALUES ('train', 'abc', '/s', 'running', 0, 1, 1, '/l', 42, ?)",
        ("python\x00train.py\x00",),
    )
    old.commit()
    old.close()
    registry = EmbeddedRegistry.open(state)
    assert registry.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    runs = RunStore(registry.db)
    left = runs.latest("train", "abc")
    assert left is not None
    assert (left.pid, left.cmdline, left.start_ticks) == (42, "python\x00train.py\x00", None)
    updated = runs.update(left.id, pid=43, start_ticks=123456)
    assert (updated.pid, updated.start_ticks) == (43, 123456)


@pytest.mark.parametrize(
    ("uri", "reference"),
    [
        ("registry://digits@latest", ("digits", "latest")),
        ("registry://digits@3", ("digits", "3")),
        ("models:/digits/3", ("digits", "3")),
        ("models:/digits@champion", ("digits", "champion")),
        ("models:/digits@latest", ("digits", "latest")),
        ("s3://bucket/digits", None),
        ("models:/digits/Production/1", None),
    ],
)
def test_both_registries_uris_name_a_model_and_a_selector(
    uri: str, reference: tuple[str, str] | None
) -> None:
    assert registry_reference(uri) == reference


def test_a_uri_of_the_other_registry_is_refused_with_what_to_set(tmp_path: Path) -> None:
    registry = EmbeddedRegistry.open(tmp_path / ".kaip")
    check_scheme("registry://digits@latest", registry, "Model digits")
    with pytest.raises(RegistryError, match="KAIP_REGISTRY__BACKEND=mlflow") as refused:
        check_scheme("models:/digits/2", registry, "Model digits")
    assert str(refused.value).startswith("Model digits: models:/digits/2 names a version")
    assert open_registry(registry, RegistrySettings()) is registry

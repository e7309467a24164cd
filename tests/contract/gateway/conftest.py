"""Fixtures for contract tests: real replica processes on inherited loopback sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from gateway_harness import BackendProcess, spawner, stop_all


@pytest.fixture
def spawn_backend() -> Iterator[Callable[[str], BackendProcess]]:
    """Start ``gateway_backend.py`` replicas; each listens before it starts: no readiness wait."""
    spawn, started = spawner()
    yield spawn
    stop_all(started)


@pytest.fixture(scope="module")
def backends_ab() -> Iterator[tuple[BackendProcess, BackendProcess]]:
    """Two replicas, "A" and "B", shared by a module's tests (which use distinct hold keys)."""
    spawn, started = spawner()
    yield spawn("A"), spawn("B")
    stop_all(started)

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from local_platform import LocalPlatform


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    local = LocalPlatform(tmp_path)
    try:
        yield local
    finally:
        local.down()

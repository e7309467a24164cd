"""``kaip events [NAME]`` against a real ``kaip up`` (issue 13 #8): the deployment events, for
one resource or all, as text or JSON."""

from __future__ import annotations

import json
import shutil

import pytest
from local_platform import FIXTURES, LocalPlatform, model_spec

pytestmark = pytest.mark.slow

APP = """\
---
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {name: web}
spec:
  owner: e2e
  command: [python, tiny_server.py]
"""


def test_events_show_who_deployed_what_for_one_resource_or_all(platform: LocalPlatform) -> None:
    spec = platform.write_spec(model_spec() + APP)
    shutil.copy(FIXTURES / "tiny_server.py", platform.spec_dir / "tiny_server.py")
    platform.up(spec)
    listed = platform.cli("events", "web", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    events = json.loads(listed.stdout)["events"]
    assert events and {e["name"] for e in events} == {"web"}
    assert all(e["kind"] == "App" and e["who"] and e["outcome"] for e in events)
    every = platform.cli("events")
    assert every.returncode == 0, every.stderr
    assert " App web " in every.stdout and " Model echo " in every.stdout
    none = platform.cli("events", "nothing")
    assert (none.returncode, none.stdout.strip()) == (0, "no events for nothing yet")

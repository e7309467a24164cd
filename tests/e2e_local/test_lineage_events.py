"""OpenLineage run events of training runs, as an OpenLineage consumer receives them.

``kaip train`` runs with ``OPENLINEAGE_URL`` pointing at an HTTP receiver on loopback (what
Marquez listens on: ``POST /api/v1/lineage``); the official ``openlineage-python`` client sends the
events. A successful run sends START then COMPLETE (the spec's inputs, the artifact as output with
its registered version), a failing one START then FAIL with the reason. Every event is validated
against the OpenLineage JSON Schema (spec 2-0-2) and every facet against its own schema, both
vendored under ``fixtures/openlineage`` (the client does not ship them).
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from local_platform import LocalPlatform, wait_for
from referencing import Registry, Resource
from webhook_receiver import webhook_receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EXAMPLES = Path(__file__).parents[2] / "examples"
SCHEMAS = Path(__file__).parent / "fixtures" / "openlineage"
OPENLINEAGE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
JOB = """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {name: digits-lineage}
spec:
  owner: e2e
  command: [python, train.py]
  inputs: ["sklearn://datasets/digits", "s3://data/digits/extra.csv"]
  output: {uri: out/digits.joblib, format: sklearn, model: digits}
"""
FAILING = """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {name: broken}
spec:
  owner: e2e
  command: [python, -c, "raise SystemExit(7)"]
  maxRetries: 0
"""


def schemas() -> Registry:
    documents = [json.loads(p.read_text()) for p in sorted(SCHEMAS.rglob("*.json"))]
    return Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in documents)


def validate(event: dict[str, Any], registry: Registry) -> None:
    """The event against OpenLineage.json, and each facet against the schema it names."""
    root = registry.contents(OPENLINEAGE)
    checker = FormatChecker()
    Draft202012Validator(root, registry=registry, format_checker=checker).validate(event)
    assert event["schemaURL"] == f"{OPENLINEAGE}#/$defs/RunEvent"
    uuid.UUID(event["run"]["runId"])
    assert datetime.fromisoformat(event["eventTime"]).tzinfo is not None
    facets = [*event["run"].get("facets", {}).values(), *event["job"].get("facets", {}).values()]
    for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
        facets += dataset.get("facets", {}).values()
    for facet in facets:
        document, _, pointer = facet["_schemaURL"].partition("#")
        assert document in {str(uri) for uri in registry}, (
            f"no vendored schema for {facet['_schemaURL']}: add it under {SCHEMAS}"
        )
        schema = {"$ref": facet["_schemaURL"]}
        Draft202012Validator(schema, registry=registry, format_checker=checker).validate(facet)
        assert pointer.startswith("/$defs/")


def test_runs_send_start_then_complete_or_fail_valid_against_the_openlineage_schema(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = schemas()
    platform.spec_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "quickstart" / "train.py", platform.spec_dir / "train.py")
    (platform.spec_dir / "job.yaml").write_text(JOB)
    (platform.spec_dir / "broken.yaml").write_text(FAILING)
    with webhook_receiver() as receiver:
        receiver.status = 201
        monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
        ok = platform.cli("train", str(platform.spec_dir / "job.yaml"))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        failed = platform.cli("train", str(platform.spec_dir / "broken.yaml"))
        assert failed.returncode == 1, failed.stdout + failed.stderr
        wait_for(lambda: len(receiver.bodies("/api/v1/lineage")) >= 4, "four lineage events")
        events = receiver.bodies("/api/v1/lineage")

    assert len(events) == 4, events
    for event in events:
        validate(event, registry)
    good = [e for e in events if e["job"]["name"] == "digits-lineage"]
    bad = [e for e in events if e["job"]["name"] == "broken"]
    assert [e["eventType"] for e in good] == ["START", "COMPLETE"]
    assert [e["eventType"] for e in bad] == ["START", "FAIL"]
    assert len({e["run"]["runId"] for e in good}) == 1  # one run, one id
    assert good[0]["run"]["runId"] != bad[0]["run"]["runId"]
    assert {e["job"]["namespace"] for e in events} == {"kaip"}
    assert [(d["namespace"], d["name"]) for d in good[1]["inputs"]] == [
        ("sklearn://datasets", "digits"),
        ("s3://data", "digits/extra.csv"),
    ]
    [output] = good[1]["outputs"]
    [version] = json.loads(platform.cli("models", "versions", "digits", "-o", "json").stdout)
    assert output["facets"]["version"]["datasetVersion"] == f"digits@{version['version']}"
    assert (output["namespace"], f"file://{output['name']}") == ("file", version["storage"])
    assert "exit code 7" in bad[1]["run"]["facets"]["errorMessage"]["message"]


def test_the_schema_check_refuses_an_event_missing_what_the_spec_requires() -> None:
    """The validation above can fail: an event without its run, or a facet without _producer."""
    registry = schemas()
    event = {
        "eventType": "START",
        "eventTime": "2026-11-30T08:00:00+00:00",
        "job": {"namespace": "kaip", "name": "j"},
        "producer": "https://github.com/kaip-dev/kaip",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }
    with pytest.raises(Exception, match="run"):
        validate(event, registry)
    event["run"] = {
        "runId": str(uuid.uuid4()),
        "facets": {"errorMessage": {"message": "x", "programmingLanguage": "unknown",
                   "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"}},
    }  # fmt: skip
    with pytest.raises(Exception, match="_producer"):
        validate(event, registry)

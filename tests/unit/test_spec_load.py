from pathlib import Path

import pytest

from kaip.errors import SpecError
from kaip.spec import Model, dump_yaml, load_paths, load_text

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_examples_are_valid() -> None:
    specs = load_paths([EXAMPLES])
    kinds = {d.resource.kind for d in specs.documents}
    assert {"Model", "App"} <= kinds


def test_model_fields_are_snake_case_in_python_and_camel_case_in_yaml() -> None:
    specs = load_paths([EXAMPLES / "quickstart"])
    doc = specs.find("Model", "digits")
    assert doc is not None
    model = doc.resource
    assert isinstance(model, Model)
    assert model.spec.serve.batching.max_batch_size == 64
    assert "maxBatchSize" in dump_yaml([model])
    assert doc.base_dir == (EXAMPLES / "quickstart")


def test_every_problem_is_reported_with_its_position() -> None:
    text = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: ok}
spec:
  owner: team
  artifact: {uri: m.onnx, format: onnx}
  scaling: {maxReplica: 2}
  serve: {protocols: [grpc]}
"""
    with pytest.raises(SpecError) as info:
        load_text(text, "k.yaml")
    lines = str(info.value).splitlines()
    assert lines == [
        "k.yaml:7:13: spec.scaling.maxReplica: unknown field 'maxReplica' "
        "(did you mean 'maxReplicas'?)",
        "k.yaml:8:23: spec.serve.protocols[0]: 'grpc' is not allowed (allowed: oip-v2, openai)",
    ]
    assert info.value.exit_code == 2

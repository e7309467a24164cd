"""Properties of the spec: round trips, and the JSON Schema agreeing with the models.

1. Any valid resource survives dump -> YAML -> load unchanged.
2. On generated documents, valid and mutated, ``kaip schema``'s JSON Schema and the loader
   (pydantic) agree on what is valid, with documented exceptions JSON Schema cannot express
   (see :mod:`kaip.spec.rules`): ``minReplicas <= maxReplicas``, strictly increasing step
   weights, served names that overlap, a network peer's ``except`` blocks lying inside its
   ``cidr``, and the pod fields' comparisons (a variable in both ``env`` and ``envValueFrom``,
   two volumes with one name or one mount path, a GPU node selector that contradicts
   ``gpuModel``). Two things are kept out of the generated inputs on purpose: floats with
   integral values (JSON Schema counts ``2.0`` as an integer; YAML and kaip do not) and strings
   with a line break (Python's ``re`` lets ``$`` match before a final newline, where ECMA-262
   and RE2 do not, so the ``jsonschema`` package would differ from an editor and from the
   apiserver).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from spec_strategies import KIND_MODELS, Doc, documents, neighbours, parent, paths, variants

from kaip.errors import SpecError
from kaip.spec import dump_resource, dump_yaml, load_document, load_text
from kaip.spec.limits import BoundedLoader
from kaip.spec.schema import json_schema

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCHEMA = json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# What pydantic and CEL check but JSON Schema cannot: comparing two values of one document.
INEXPRESSIBLE = (
    "is greater than maxReplicas",
    "step weights must be strictly increasing",
    "overlaps",  # served names: 'a/b' beside 'a'
    "is not inside cidr",
    # kaip.spec.pod: values of two fields, or of two list items, compared
    "is set in both env and envValueFrom",
    "is used twice",
    "two volumes are mounted at",
    "but resources.gpuModel is",
    "is not a URL kaip can fetch",  # a URL's host and port as urllib splits them
    # kaip.spec.rollout: the strategy against traffic, steps and hooks (pydantic only)
    "needs strategy: canary",
    "strategy blueGreen",
)

REPLACEMENTS: list[Any] = [
    None, True, False, 0, 1, -1, 2, 63, 64, 100, 101, 1000, 1001, 65536, 2**31 + 1,
    0.5, 1.5, -0.5, 2.5e-7, "", "x", "a-b", "Abc", "-a", "500m", "1Gi", "1.5", "2 cores",
    "/healthz", "healthz", "oip-v2", "grpc", "sklearn", "python", "onnx", "canary", "replace",
    "s3://b/k", "ftp://x/y", "a:B", "m.n:C", "0" * 64, "kaip.dev/v1alpha1", "Model", "App",
    "TrainingJob", [], ["x"], ["oip-v2", "openai"], [{"weight": 10}], [{"weight": 50},
    {"weight": 10}], {}, {"a": "b"}, {"weight": 50}, {"minReplicas": 5},
]  # fmt: skip
UNKNOWN_KEYS = ["extra", "maxReplica", "Owner", "status"]


@st.composite
def mutated(draw: st.DrawFn) -> Doc:
    """A valid document with one to three edits: a value replaced, a key dropped or added."""
    doc: Any = copy.deepcopy(draw(documents()))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths(doc)))
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        current = parent(doc, path)[path[-1]] if path else doc
        pool = st.sampled_from(REPLACEMENTS) | st.sampled_from(neighbours(current))
        value = copy.deepcopy(draw(pool))
        if not path:
            doc = value if action == "replace" else doc
            continue
        holder = parent(doc, path)
        if action == "replace":
            holder[path[-1]] = value
        elif action == "drop" and isinstance(holder, dict):
            del holder[path[-1]]
        elif action == "add" and isinstance(holder[path[-1]], dict):
            holder[path[-1]][draw(st.sampled_from(UNKNOWN_KEYS))] = value
    return doc  # type: ignore[no-any-return]


def _kaip_verdict(doc: Any) -> list[str]:
    """Every problem ``kaip validate`` finds in ``doc`` as a YAML file (empty: valid)."""
    try:
        load_text(yaml.safe_dump(doc, sort_keys=False), "doc.yaml")
    except SpecError as exc:
        return [p.message for p in exc.problems]
    return []


def _document_verdict(doc: Any) -> list[str]:
    """The same, for a document already parsed (no YAML round; fast)."""
    try:
        load_document(doc)
    except SpecError as exc:
        return [p.message for p in exc.problems]
    return []


def _assert_agree(doc: Any, problems: list[str]) -> str:
    """Assert the schema's verdict matches kaip's; return which case this was."""
    schema_valid = VALIDATOR.is_valid(doc)
    if not problems:
        assert schema_valid, [e.message for e in VALIDATOR.iter_errors(doc)]
        return "valid"
    if all(any(s in p for s in INEXPRESSIBLE) for p in problems):
        return "only cross-value problems: JSON Schema cannot judge"
    assert not schema_valid, problems
    return "invalid"


@SETTINGS
@given(documents())
def test_valid_resource_survives_dump_yaml_load(doc: Doc) -> None:
    resource = KIND_MODELS[doc["kind"]].model_validate(doc)
    text = dump_yaml([resource])
    (loaded,) = load_text(text, "roundtrip.yaml").resources
    assert loaded == resource
    assert dump_resource(loaded) == dump_resource(resource)


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@SETTINGS
@given(documents())
def test_schema_accepts_every_valid_document(doc: Doc) -> None:
    assert _kaip_verdict(doc) == []
    assert [e.message for e in VALIDATOR.iter_errors(doc)] == []


# 20: a document with pod fields has about twice the nodes it had before them, and each node
# is nudged every way; 40 of them came close to the 300 s hang bound on a loaded machine.
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_schema_and_models_agree_on_every_neighbour_of_a_valid_document(doc: Doc) -> None:
    """Each node of a valid document nudged in every way _neighbours knows, one at a time."""
    for path in paths(doc):
        for variant in variants(doc, path):
            event(_assert_agree(variant, _document_verdict(variant)))


@SETTINGS
@given(mutated())
def test_schema_and_models_agree_on_mutated_documents(doc: Any) -> None:
    """Several edits at once, judged through YAML as `kaip validate` would."""
    event(_assert_agree(doc, _kaip_verdict(doc)))


CORPUS = Path(__file__).parents[1] / "spec_corpus"


def _corpus_documents() -> list[tuple[str, Any]]:
    found = []
    for path in sorted(CORPUS.rglob("*.y*ml")):
        try:  # bounded as kaip reads it: the corpus holds a billion laughs and a cycle
            docs = list(yaml.load_all(path.read_text(), Loader=BoundedLoader))
        except yaml.YAMLError:
            continue  # a syntax error or a limit is the loader's to report; nothing to judge
        found += [(f"{path.relative_to(CORPUS)}#{i}", d) for i, d in enumerate(docs) if d]
    return found


@pytest.mark.parametrize(("where", "doc"), _corpus_documents(), ids=lambda v: str(v)[:60])
def test_schema_and_models_agree_on_the_corpus(where: str, doc: Any) -> None:
    """Every document of tests/spec_corpus, one at a time (a fixed check of each rule)."""
    verdict = _assert_agree(doc, _document_verdict(doc))
    assert verdict == "valid" or where.startswith("bad/")

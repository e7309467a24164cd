"""Loading spec files: YAML in, validated resources out, every problem located.

The loader owns reading spec files. It composes YAML into nodes so that each value keeps its
line and column, rejects duplicate keys, dispatches each document on ``apiVersion``/``kind`` and
validates it with the pydantic models. Every problem in every file is collected and raised
together as one :class:`~kaip.errors.SpecError` whose lines read ``FILE:LINE:COL: path: message``.
What one load may cost (file sizes, nesting, alias expansion) is bounded by
:mod:`kaip.spec.limits`; a file past a limit is a located problem like any other.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kaip.errors import Problem, SpecError
from kaip.spec.base import API_VERSION, FieldProblem, ValueProblem
from kaip.spec.files import TotalSpent, read_spec_file, size_text, spec_files
from kaip.spec.kinds import KINDS, Model, Resource, names_clash
from kaip.spec.limits import MAX_FILE_BYTES, MAX_TOTAL_BYTES, BoundedLoader, SpecLimitError
from kaip.spec.messages import kind_of, message_of, suggest

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class SpecDocument:
    """One validated resource and where it came from."""

    resource: Resource
    path: Path
    line: int

    @property
    def base_dir(self) -> Path:
        """The directory relative artifact paths are resolved against."""
        return self.path.parent


@dataclass(frozen=True)
class SpecSet:
    """Every resource of one load, in file order."""

    documents: tuple[SpecDocument, ...]
    skipped: tuple[Problem, ...] = ()
    """Plain Kubernetes manifests found beside the resources (another ``apiVersion`` and a kind
    kaip does not have), left out, each located, with the note that says so."""

    @property
    def resources(self) -> list[Resource]:
        return [d.resource for d in self.documents]

    def of_kind(self, kind: str) -> list[SpecDocument]:
        return [d for d in self.documents if d.resource.kind == kind]

    def find(self, kind: str, name: str) -> SpecDocument | None:
        for doc in self.documents:
            if doc.resource.kind == kind and doc.resource.metadata.name == name:
                return doc
        return None


@dataclass
class _Positions:
    """Line/column (1-based) of each key and value of one document, by path."""

    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: PathKey) -> tuple[int, int]:
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if end == len(path) and prefix in self.values:
                return self.keys.get(prefix, self.values[prefix])
            if prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return (1, 1)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _walk(
    node: yaml.Node, path: PathKey, pos: _Positions, problems: list[Problem], file: str
) -> None:
    """Record positions and report duplicate keys."""
    pos.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line, col = _mark(key_node)
            if key in seen:
                problems.append(
                    Problem(
                        file,
                        line,
                        col,
                        _dotted((*path, key)),
                        f"duplicate key {key!r}, first defined on line {seen[key]}",
                        "remove one of them",
                    )
                )
            seen[key] = line
            pos.keys[(*path, key)] = (line, col)
            _walk(value_node, (*path, key), pos, problems, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), pos, problems, file)


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _model_at(cls: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model that holds the mapping at ``path`` (None if not a model)."""
    current: Any = cls
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        by_alias = {(f.alias or n): f for n, f in current.model_fields.items()}
        found = by_alias.get(part)
        if found is None:
            return None
        current = _unwrap(found.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
            if typing.get_origin(arg) is list:
                return _unwrap(arg)
        return None
    if origin is list:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return annotation


def _aliases(cls: type[BaseModel]) -> list[str]:
    return [(f.alias or n) for n, f in cls.model_fields.items()]


def _problem_from_error(err: Any, cls: type[BaseModel], pos: _Positions, file: str) -> Problem:
    loc: PathKey = tuple(err["loc"])
    kind: str = err["type"]
    message, hint = message_of(err)
    if kind == "value_error":
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, ValueProblem):
            message, hint = str(cause), cause.hint
        if isinstance(cause, FieldProblem):
            loc = (*loc, *cause.path)
    elif kind == "extra_forbidden":
        parent = _model_at(cls, loc[:-1])
        message = f"unknown field {loc[-1]!r}"
        if parent is not None:
            hint = suggest(str(loc[-1]), _aliases(parent))
    elif kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        message = f"{err.get('input')!r} is not allowed"
        hint = suggest(str(err.get("input")), allowed)
    line, col = pos.locate(loc)
    return Problem(file, line, col, _dotted(loc), message, hint)


def _documents(text: str, file: str, problems: list[Problem]) -> Iterator[tuple[Any, _Positions]]:
    loader = BoundedLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node guarantees a node
                break
            if isinstance(node, yaml.ScalarNode) and node.value == "" and not node.style:
                continue  # an empty document, e.g. after a trailing '---'
            pos = _Positions()
            _walk(node, (), pos, problems, file)
            yield loader.construct_document(node), pos
    except SpecLimitError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problems.append(Problem(file, line, col, "", str(exc.problem), exc.hint))
    except yaml.MarkedYAMLError as exc:
        problems.append(_syntax_problem(exc, file))
    except yaml.YAMLError as exc:
        problems.append(Problem(file, 1, 1, "", f"YAML error: {exc}"))
    finally:
        loader.dispose()


_SYNTAX_HINTS = {
    "that cannot start any token": "indent with spaces, not tabs",
    "mapping values are not allowed here": "check this line's indentation, or quote a value "
    "that contains ': '",
}


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    """A YAML syntax error where it was found, with where the broken construct began."""
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = exc.problem or "invalid YAML"
    hint = next((h for key, h in _SYNTAX_HINTS.items() if key in what), "")
    start = exc.context_mark
    if not hint and exc.context and start is not None and start is not exc.problem_mark:
        hint = f"{exc.context} that began at line {start.line + 1}, column {start.column + 1}"
    return Problem(file, line, col, "", f"YAML syntax error: {what}", hint)


def _plain_manifest(data: dict[Any, Any]) -> bool:
    """A Kubernetes object of someone else's (``v1`` ConfigMap, ``apps/v1`` Deployment, ...)."""
    api_version, kind = data.get("apiVersion"), data.get("kind")
    return (
        isinstance(api_version, str)
        and isinstance(kind, str)
        and bool(api_version)
        and not api_version.startswith(API_VERSION.split("/")[0] + "/")
        and kind not in KINDS
    )


def _validate(
    data: Any,
    pos: _Positions,
    file: str,
    problems: list[Problem],
    skipped: list[Problem] | None = None,
) -> Resource | None:
    line, col = pos.values.get((), (1, 1))
    if skipped is not None and isinstance(data, dict) and _plain_manifest(data):
        name = (
            (data.get("metadata") or {}).get("name")
            if isinstance(data.get("metadata"), dict)
            else None
        )
        what = (
            f"{data['kind']} {str(name)[:80] if name else '(no name)'} ({data['apiVersion'][:80]})"
        )
        skipped.append(
            Problem(
                file, line, col, "",
                f"{what} is a plain Kubernetes manifest, not a kaip resource: skipped",
                "kaip render, kaip up and kaip validate leave it out; apply it with kubectl",
            )
        )  # fmt: skip
        return None
    if not isinstance(data, dict):
        problems.append(
            Problem(
                file,
                line,
                col,
                "",
                f"a document must be a mapping, not {kind_of(data)}",
                "start with 'apiVersion: kaip.dev/v1alpha1' and 'kind: Model'",
            )
        )
        return None
    api_version = data.get("apiVersion")
    kind = data.get("kind")
    ok = True
    if api_version is None:
        problems.append(
            Problem(
                file,
                line,
                col,
                "apiVersion",
                "required field is missing",
                f"add 'apiVersion: {API_VERSION}'",
            )
        )
        ok = False
    elif api_version != API_VERSION:
        at_line, at_col = pos.locate(("apiVersion",))
        problems.append(
            Problem(
                file,
                at_line,
                at_col,
                "apiVersion",
                f"unknown apiVersion {api_version!r}",
                f"use {API_VERSION!r}",
            )
        )
        ok = False
    if kind is None:
        problems.append(
            Problem(
                file, line, col, "kind", "required field is missing", "allowed: " + ", ".join(KINDS)
            )
        )
        return None
    cls = KINDS.get(str(kind))
    if cls is None:
        at_line, at_col = pos.locate(("kind",))
        problems.append(
            Problem(
                file,
                at_line,
                at_col,
                "kind",
                f"unknown kind {kind!r}",
                suggest(str(kind), list(KINDS)),
            )
        )
        return None
    try:
        resource = cls.model_validate(data)
    except ValidationError as exc:
        problems.extend(
            _problem_from_error(e, cls, pos, file)
            for e in exc.errors(include_url=False)
            if ok or e["loc"] != ("apiVersion",)  # already reported above
        )
        return None
    return resource if ok else None


def load_text(text: str, file: str = "<string>") -> SpecSet:
    """Validate spec text; raise SpecError with every problem."""
    problems: list[Problem] = []
    if len(text) > MAX_FILE_BYTES:  # characters: at least as many bytes
        message = (
            f"spec text is larger than {size_text(MAX_FILE_BYTES)}, the most a spec file may be"
        )
        raise SpecError([Problem(file, 1, 1, "", message)])
    docs = _load_one(text, Path(file), problems)
    _check_unique(docs, problems)
    if problems:
        raise SpecError(problems)
    return SpecSet(tuple(d for d, _ in docs))


def load_document(data: Any, source: str = "<document>") -> Resource:
    """Validate one already-parsed document (e.g. a custom resource the apiserver returned).

    The same checks as for a file, without YAML positions: problems point at ``source:1:1``.
    """
    problems: list[Problem] = []
    resource = _validate(data, _Positions(), source, problems)
    if problems or resource is None:
        raise SpecError(problems)
    return resource


def _load_one(
    text: str, path: Path, problems: list[Problem], skipped: list[Problem] | None = None
) -> list[tuple[SpecDocument, _Positions]]:
    file = str(path)
    out: list[tuple[SpecDocument, _Positions]] = []
    count = 0
    for data, pos in _documents(text, file, problems):
        count += 1
        resource = _validate(data, pos, file, problems, skipped)
        if resource is not None:
            out.append((SpecDocument(resource, path, pos.values.get((), (1, 1))[0]), pos))
    if count == 0 and not any(p.file == file for p in problems):
        problems.append(
            Problem(
                file,
                1,
                1,
                "",
                "file holds no resources",
                "add a document starting with 'apiVersion: kaip.dev/v1alpha1'",
            )
        )
    return out


def _check_unique(docs: list[tuple[SpecDocument, _Positions]], problems: list[Problem]) -> None:
    seen: dict[tuple[str, str | None, str], SpecDocument] = {}
    duplicates: set[int] = set()
    for doc, pos in docs:
        meta = doc.resource.metadata
        key = (doc.resource.kind, meta.namespace, meta.name)
        if key in seen:
            first = seen[key]
            duplicates.add(id(doc))
            line, col = pos.locate(("metadata", "name"))
            problems.append(
                Problem(
                    str(doc.path),
                    line,
                    col,
                    "metadata.name",
                    f"duplicate {doc.resource.kind} name {meta.name!r}, "
                    f"first defined at {first.path}:{first.line}",
                    "names are unique per kind",
                )
            )
        else:
            seen[key] = doc
    # A duplicate already has its problem; its served names clashing too would say it twice.
    _check_served_names([(d, p) for d, p in docs if id(d) not in duplicates], problems)


def _check_served_names(
    docs: list[tuple[SpecDocument, _Positions]], problems: list[Problem]
) -> None:
    """Served names are unique per namespace: the gateway and clients find a Model by them."""
    taken: list[tuple[str | None, str, SpecDocument]] = []
    for doc, pos in docs:
        model = doc.resource
        if not isinstance(model, Model):
            continue
        namespace = model.metadata.namespace
        explicit = bool(model.spec.serve.names)
        for index, name in enumerate(model.served_names):
            clash = next(
                (
                    (other, first)
                    for ns, other, first in taken
                    if ns == namespace and names_clash(name, other)
                ),
                None,
            )
            if clash is None:
                continue
            other, first = clash
            path: PathKey = ("spec", "serve", "names", index) if explicit else ("metadata", "name")
            line, col = pos.locate(path)
            same = "is" if name == other else f"overlaps {other!r},"
            problems.append(
                Problem(
                    str(doc.path),
                    line,
                    col,
                    _dotted(path),
                    f"served name {name!r} {same} already served by Model "
                    f"{first.resource.metadata.name!r} at {first.path}:{first.line}",
                    "give each Model of a namespace names of its own; a name may not be "
                    "another's followed by '/...'",
                )
            )
        taken.extend((namespace, name, doc) for name in model.served_names)


def load_paths(paths: Sequence[str | Path]) -> SpecSet:
    """Load and validate spec files and directories; raise SpecError with every problem.

    Plain Kubernetes manifests in them are left out and noted in ``skipped``."""
    problems: list[Problem] = []
    skipped: list[Problem] = []
    docs: list[tuple[SpecDocument, _Positions]] = []
    budget = MAX_TOTAL_BYTES
    for path in spec_files(paths):
        try:
            read = read_spec_file(path, budget, problems)
        except TotalSpent:
            break
        if read is None:
            continue
        text, size = read
        budget -= size
        if not text.strip():
            problems.append(
                Problem(
                    str(path),
                    1,
                    1,
                    "",
                    "file is empty",
                    "add a document starting with 'apiVersion: kaip.dev/v1alpha1'",
                )
            )
            continue
        docs.extend(_load_one(text, path, problems, skipped))
    _check_unique(docs, problems)
    if problems:
        raise SpecError(problems)
    return SpecSet(tuple(d for d, _ in docs), tuple(skipped))


def dump_resource(resource: Resource) -> dict[str, Any]:
    """The resource as a plain mapping in spec form (camelCase), ready for YAML or JSON."""
    return resource.model_dump(mode="json", by_alias=True, exclude_none=True)


def dump_yaml(resources: Iterable[Resource]) -> str:
    return yaml.safe_dump_all(
        (dump_resource(r) for r in resources), sort_keys=False, default_flow_style=False
    )

"""What reading specs may cost: bytes, files, nesting depth and YAML alias expansion.

A spec is a few kilobytes written by a person, but ``kaip validate``, ``kaip up`` and the admin
API's deploy read whatever file they are pointed at. Every one of those reads is bounded here:

- a file is at most :data:`MAX_FILE_BYTES` and one load reads at most :data:`MAX_FILES` files
  (found among at most :data:`MAX_ENTRIES` directory entries) and :data:`MAX_TOTAL_BYTES` in
  all (checked by :mod:`kaip.spec.files` before anything is parsed);
- :class:`BoundedLoader` composes YAML with a nesting limit (:data:`MAX_DEPTH`, so a
  3,000-deep ``[[[...]]]`` is a located problem, not a ``RecursionError``), refuses an alias
  inside the value it names (``&a [*a]``, a cycle no reader can expand), and counts each
  document's values *as expanded*, aliases included: a "billion laughs" file of a few hundred
  bytes stops at :data:`MAX_VALUES` values, the moment its count passes the limit, instead of
  being expanded by whatever walks the document next.

The count is kept per node as it is composed (an alias reuses the count of the node it names), so
checking costs one step per value actually in the file. Raises :class:`SpecLimitError`, a located
YAML error the loader turns into a :class:`~kaip.errors.Problem`. Never reads files itself.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_FILE_BYTES = 256 << 10
"""One spec file: 256 KiB, about 180 times the quickstart's (1.4 KiB)."""
MAX_TOTAL_BYTES = 4 << 20
"""Every file of one load together."""
MAX_FILES = 1000
"""Spec files one load may name or find in its directories."""
MAX_ENTRIES = 100_000
"""Files and directories one load may look through to find its spec files."""
MAX_DEPTH = 64
"""Nesting of mappings and lists, counted through aliases; kaip's own fields nest 5 deep."""
MAX_VALUES = 100_000
"""Scalars, mappings and lists in one file, each alias counted as the value it expands to."""


class SpecLimitError(yaml.MarkedYAMLError):
    """A spec file passes one of the limits above; ``problem_mark`` is where."""

    def __init__(self, message: str, hint: str, mark: Any) -> None:
        super().__init__(problem=message, problem_mark=mark)
        self.hint = hint


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, composing within :data:`MAX_DEPTH` and :data:`MAX_VALUES`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._open_anchors: set[str] = set()
        self._weights: dict[int, tuple[int, int]] = {}  # id(node): (values, depth) expanded
        self._values = 0  # in this file so far, expanded

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        self._weights.clear()
        return node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise SpecLimitError(
                    f"the alias *{event.anchor} is inside the value &{event.anchor} names, so it "
                    "never ends",
                    "an alias may only repeat a value that is complete before it",
                    event.start_mark,
                )
            node = super().compose_node(parent, index)
            values, depth = self._weights[id(node)]
            self._count(values, depth, event.start_mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise SpecLimitError(
                f"values nest more than {MAX_DEPTH} deep here",
                "a kaip spec nests a few levels; look for unclosed or repeated [ or {",
                event.start_mark,
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)
        assert node is not None  # an event that starts a value always composes one
        self._weigh(node)
        self._count(1, 0, event.start_mark)
        return node

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        """Refuse a ``[`` or ``{`` past the depth limit while scanning, before any composing.

        The scanner keeps every open flow collection as a possible simple key and rescans them
        at each token, so thousands of ``[`` cost quadratic time before the first node exists.
        """
        if self.flow_level >= MAX_DEPTH:
            raise SpecLimitError(
                f"values nest more than {MAX_DEPTH} deep here",
                "a kaip spec nests a few levels; look for unclosed or repeated [ or {",
                self.get_mark(),
            )
        super().fetch_flow_collection_start(TokenClass)

    def _weigh(self, node: yaml.Node) -> None:
        """Store the expanded size of ``node`` from its children's (composed before it)."""
        weights = self._weights
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            weights[id(node)] = (1, 0)
            return
        values, depth = 1, 0
        for child in children:
            child_values, child_depth = weights[id(child)]
            values += child_values
            depth = max(depth, child_depth)
        weights[id(node)] = (values, depth + 1)

    def _count(self, values: int, depth: int, mark: Any) -> None:
        """One more value here, or an alias's ``values``, ``depth`` deep, repeated here."""
        if depth + self._depth > MAX_DEPTH:
            raise SpecLimitError(
                f"through aliases, values nest more than {MAX_DEPTH} deep here",
                "repeat fewer aliases inside aliases",
                mark,
            )
        self._values += values
        if self._values > MAX_VALUES:
            raise SpecLimitError(
                f"the file holds more than {MAX_VALUES:,} values here (each alias counted as "
                "the value it repeats)",
                "a spec needs far fewer; split it into several files, or repeat fewer aliases",
                mark,
            )

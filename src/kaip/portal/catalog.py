"""The portal's catalog query: search by name, filter by owner, one page at a time (server side).

:func:`parse_query` validates ``?q=&owner=&page=&per_page=`` (a search of at most 253
characters, pages of 1 to :data:`MAX_PER_PAGE` rows, page numbers from 1); :func:`select` picks
the names of one page from ``(name, owner)`` pairs sorted by name, so the source builds the
status of those rows only, whatever the number of resources. Pure: never reads a source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kaip.local.controller.admin import BadRequestError

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 200
MAX_TEXT = 253


@dataclass(frozen=True)
class CatalogQuery:
    q: str = ""
    """Part of a name, matched ignoring case ("" matches every name)."""
    owner: str = ""
    """An owner, matched exactly ("" matches every owner)."""
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE


@dataclass(frozen=True)
class CatalogPage:
    names: tuple[str, ...]
    total: int
    """How many resources match the search and filter (on every page)."""
    page: int
    pages: int
    per_page: int


def _whole(query: Mapping[str, str], field: str, default: int, most: int) -> int:
    text = query.get(field, "") or str(default)
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise BadRequestError(f"{field}={text[:20]!r}: give a whole number from 1 to {most}")
    return int(text)


def parse_query(query: Mapping[str, str]) -> CatalogQuery:
    """The catalog query of a request's parameters; 400 naming the parameter when wrong."""
    for field in ("q", "owner"):
        if len(query.get(field, "")) > MAX_TEXT:
            raise BadRequestError(f"{field}: at most {MAX_TEXT} characters")
    return CatalogQuery(
        q=query.get("q", "").strip(),
        owner=query.get("owner", ""),
        page=_whole(query, "page", 1, 1_000_000),
        per_page=_whole(query, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE),
    )


def select(entries: Sequence[tuple[str, str]], query: CatalogQuery) -> CatalogPage:
    """The names on the asked page of those matching ``query``, by name; a page past the last
    one is empty (its number is kept, so links back still work)."""
    needle = query.q.casefold()
    matching = sorted(
        name
        for name, owner in entries
        if (not needle or needle in name.casefold()) and (not query.owner or owner == query.owner)
    )
    start = (query.page - 1) * query.per_page
    pages = max(1, math.ceil(len(matching) / query.per_page))
    return CatalogPage(
        tuple(matching[start : start + query.per_page]),
        len(matching),
        query.page,
        pages,
        query.per_page,
    )

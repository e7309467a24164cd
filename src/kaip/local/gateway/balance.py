"""Choosing where one request goes: a weighted revision, then the least-loaded replica.

Pure functions over plain data and an injected random source, so they are tested with a seeded
:class:`random.Random` and no sockets. Never does I/O and never keeps state of its own: the
gateway owns the outstanding-request counts and passes them in.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Container, Mapping, Sequence

from kaip.local.gateway.routes import Backend, CompiledRoute


def pick_revision(route: CompiledRoute, rng: random.Random) -> str | None:
    """A revision drawn with probability proportional to its weight; None if none can serve."""
    cumulative = route.cumulative
    if not cumulative:
        return None
    if len(cumulative) == 1:
        return cumulative[0][1]
    point = rng.random() * route.total
    index = bisect.bisect_right(cumulative, point, key=lambda entry: entry[0])
    return cumulative[min(index, len(cumulative) - 1)][1]


def pick_least_outstanding(
    backends: Sequence[Backend],
    outstanding: Mapping[str, int],
    rng: random.Random,
    exclude: Container[str] = (),
) -> Backend | None:
    """The backend with the fewest requests in flight, ties broken at random.

    Random tie-breaking matters at low load: always taking the first of equals would send every
    request of a single client to one replica. Backends whose replica id is in ``exclude`` are
    skipped; None when nothing is left.
    """
    best: list[Backend] = []
    best_count = 0
    for backend in backends:
        if backend.replica in exclude:
            continue
        count = outstanding.get(backend.replica, 0)
        if not best or count < best_count:
            best = [backend]
            best_count = count
        elif count == best_count:
            best.append(backend)
    if not best:
        return None
    if len(best) == 1:
        return best[0]
    return best[rng.randrange(len(best))]


def pick_backend(
    route: CompiledRoute,
    revision: str,
    outstanding: Mapping[str, int],
    rng: random.Random,
    exclude: Container[str] = (),
) -> Backend | None:
    """A backend of ``revision`` if one is left, else of any revision (used for retries)."""
    own = route.by_revision.get(revision, ())
    chosen = pick_least_outstanding(own, outstanding, rng, exclude)
    if chosen is None:
        chosen = pick_least_outstanding(route.route.backends, outstanding, rng, exclude)
    return chosen

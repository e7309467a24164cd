"""Running a :class:`Gateway` in a test's own event loop, with an httpx client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from kaip.local.gateway import Backend, Gateway, Route


def backend(replica: str, revision: str, port: int) -> Backend:
    return Backend(replica=replica, revision=revision, host="127.0.0.1", port=port)


def model(name: str, weights: dict[str, int], *backends: Backend) -> Route:
    return Route(kind="model", name=name, weights=weights, backends=tuple(backends))


def app(name: str, *backends: Backend) -> Route:
    revision = backends[0].revision if backends else "r1"
    return Route(kind="app", name=name, weights={revision: 100}, backends=tuple(backends))


@asynccontextmanager
async def running(
    routes: list[Route], **options: Any
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    gateway = Gateway(host="127.0.0.1", port=0, **options)
    port = await gateway.start()
    gateway.set_routes(routes)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            yield gateway, client
    finally:
        await gateway.stop()

"""The local gateway in a process of its own, so that a test can measure it from outside.

Run as ``python gateway_process.py ROUTES_JSON``: each route is ``{kind, name, weights,
backends: [{replica, revision, host, port}], max_request_bytes}``. Limits come from the
``KAIP_LOCAL__*`` settings, as in ``kaip up``. Prints the bound port, serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import uvloop

from kaip.local.gateway import Backend, Gateway, Route
from kaip.settings import load_settings


async def main(raw_routes: str) -> None:
    local = load_settings().local
    routes = [
        Route(
            kind=r["kind"],
            name=r["name"],
            weights=r["weights"],
            backends=tuple(Backend(**b) for b in r["backends"]),
            max_request_bytes=r.get("max_request_bytes"),
        )
        for r in json.loads(raw_routes)
    ]
    gateway = Gateway(
        port=0,
        limits=local.gateway_http,
        app_max_request_bytes=local.app_max_request_bytes,
        drain_s=0.5,
    )
    port = await gateway.start()
    gateway.set_routes(routes)
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await gateway.stop()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1]))

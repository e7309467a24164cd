"""The admin API under ``/_kaip/`` on the gateway's port: what the CLI talks to.

``GET /_kaip/status``, ``POST /_kaip/deploy`` (``{"paths": [...], "who": "...", "commit":
{"sha": "...", "committed_at": 1.0}}``, commit optional),
``GET /_kaip/rollouts/{name}``, ``POST /_kaip/rollouts/{name}/promote|abort`` and
``GET /_kaip/events``. Handlers parse and answer; every change is queued to the controller's loop
with :meth:`Controller.submit`. A bad spec answers 422 with every problem and changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kaip.errors import KaipError, SpecError
from kaip.local.controller.loop import Controller
from kaip.local.controller.status import status
from kaip.local.state import Commit
from kaip.spec import load_paths


def admin_app(controller: Controller) -> Starlette:
    async def get_status(request: Request) -> JSONResponse:
        return JSONResponse(status(controller))

    async def deploy(request: Request) -> JSONResponse:
        body = await _body(request)
        paths = body.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths) or not paths:
            return _error(400, 'the body must be {"paths": [spec files or directories]}')
        try:
            specs = load_paths(paths)
        except SpecError as exc:
            return JSONResponse(
                {"error": "the spec is invalid", "problems": [p.render() for p in exc.problems]},
                status_code=422,
            )
        who = str(body.get("who") or "unknown")
        commit = _commit(body.get("commit"))
        try:
            changes = await controller.submit(lambda: controller.apply(specs, who, commit))
        except KaipError as exc:
            return _error(409, exc.message)
        return JSONResponse({"changes": changes})

    async def rollout_status(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        run = controller.resources.get(name)
        if run is None:
            return _error(404, f"no Model or App named {name!r} runs here")
        history = []
        for record in controller.state.rollouts(run.kind, name, limit=10):
            item: dict[str, Any] = asdict(record)
            item["verdicts"] = [asdict(s) for s in controller.state.steps(record.id)]
            history.append(item)
        current = next((r for r in status(controller)["resources"] if r["name"] == name), None)
        return JSONResponse({"resource": current, "history": history})

    async def promote(request: Request) -> JSONResponse:
        return await _act(request, controller.promote)

    async def abort(request: Request) -> JSONResponse:
        return await _act(request, controller.abort)

    async def _act(request: Request, action: Any) -> JSONResponse:
        name = request.path_params["name"]
        who = str((await _body(request)).get("who") or "unknown")
        try:
            message = await controller.submit(lambda: action(name, who))
        except KaipError as exc:
            return _error(409, exc.message)
        return JSONResponse({"message": message})

    async def events(request: Request) -> JSONResponse:
        return JSONResponse({"events": [asdict(e) for e in controller.state.events(limit=200)]})

    return Starlette(
        routes=[
            Route("/_kaip/status", get_status),
            Route("/_kaip/deploy", deploy, methods=["POST"]),
            Route("/_kaip/rollouts/{name}", rollout_status),
            Route("/_kaip/rollouts/{name}/promote", promote, methods=["POST"]),
            Route("/_kaip/rollouts/{name}/abort", abort, methods=["POST"]),
            Route("/_kaip/events", events),
        ]
    )


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _commit(raw: Any) -> Commit | None:
    if not isinstance(raw, dict):
        return None
    sha, at = raw.get("sha"), raw.get("committed_at")
    if isinstance(sha, str) and isinstance(at, int | float):
        return Commit(sha, float(at))
    return None


def _error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)

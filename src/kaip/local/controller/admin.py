"""The admin API under ``/_kaip/`` on the control port: what the CLI (and later the portal) uses.

``GET /_kaip/status``, ``POST /_kaip/deploy`` (``{"paths": [...], "who": "...", "commit":
{"sha": "...", "committed_at": 1.0}}``, commit optional; it answers the ``changes`` and the
``rollouts`` to follow, ``[{"kind", "name", "rollout_id"}]``, id null for a first deploy;
``"dry_run": true`` answers the ``plan`` instead, each resource's would-be revision and spec
diff, and changes nothing), ``GET /_kaip/rollouts/{name}``,
``POST /_kaip/rollouts/{name}/promote|abort|undo`` (``{"who": "..."}``; promote also takes
``"full": true``, undo ``"to_revision"``), ``GET /_kaip/events`` and
``GET /_kaip/cost?by=resource|revision|owner|replica&basis=usage|allocation[&since=SECONDS]``
``[&resource=NAME...]`` (what the replicas cost, drew and emitted, attributed to their requests:
kaip.accounting's report, since each replica started or over the last SECONDS, of every
resource or those named) and
``POST /_kaip/profile/{name}`` (``{"replica", "seconds", "rate", "format"}``: a sampling profile
of one of its replicas, deployer role) and ``GET /_kaip/openapi.json`` (this API, described).
Reads need the ``viewer`` role, changes the ``deployer`` role;
:mod:`~kaip.local.controller.guard` has already checked Host, Origin, the credential, the media
type and the body size before a handler runs.

Handlers parse and answer; every change is queued to the controller's loop with
:meth:`Controller.submit`. A bad spec answers 422 with every problem and changes nothing. Specs
are read in a worker thread, one load at a time and within :data:`SPEC_LOAD_TIMEOUT_S`, so a
large spec never stalls the event loop that also runs the gateway and the controller. Every
error is ``{"error": ...}`` with the status of its :mod:`kaip.errors` class.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kaip.accounting import report
from kaip.errors import KaipError, PlatformError, SpecError, StorageError
from kaip.local.controller.auth import Principal, Role, require, require_owner
from kaip.local.controller.costs import CostBook
from kaip.local.controller.dryrun import dry_run
from kaip.local.controller.loop import Controller
from kaip.local.controller.preflight import check_local
from kaip.local.controller.profile import profile_replica
from kaip.local.controller.status import status
from kaip.local.state import Commit
from kaip.spec import SpecSet, load_paths

log = logging.getLogger("kaip.local.controller")

SPEC_LOAD_TIMEOUT_S = 30.0
MAX_PATHS = 100
NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
BY = ("resource", "revision", "owner", "replica")
V1_PATHS: dict[str, str] = {
    "/_kaip/status": "/api/v1/status",
    "/_kaip/deploy": "/api/v1/deployments",
    "/_kaip/rollouts/{name}": "/api/v1/rollouts/{name}",
    "/_kaip/events": "/api/v1/events",
    "/_kaip/cost": "/api/v1/cost",
    "/_kaip/profile/{name}": "/api/v1/profile/{name}",
}
"""The admin API's calls in the versioned API (``/api/v1``, beside the portal's own), where the
CLI makes them; the ``/_kaip/`` names stay as they were. Bearer tokens only, as there."""
_V1_EXACT = frozenset(p for p in V1_PATHS.values() if "{" not in p)
_V1_UNDER = tuple(p.split("{", 1)[0] for p in V1_PATHS.values() if "{" in p)


def serves_v1(path: str) -> bool:
    """Whether ``path`` is one of this API's ``/api/v1`` calls (the control port sends it here
    rather than to the portal)."""
    return path in _V1_EXACT or path.startswith(_V1_UNDER)


BASES = ("usage", "allocation")

Text = Annotated[str, Field(min_length=1, max_length=200)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommitRef(_Body):
    sha: str = Field(pattern=r"^[0-9a-f]{7,64}$", description="git commit the spec came from")
    committed_at: float = Field(ge=0, description="its commit time, seconds since the epoch")


class DeployRequest(_Body):
    paths: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        min_length=1,
        max_length=MAX_PATHS,
        description="spec files or directories, as paths on the machine kaip up runs on",
    )
    who: Text | None = Field(None, description="the person deploying, for the event log")
    commit: CommitRef | None = None
    dry_run: bool = Field(False, description="answer the plan (revisions, diffs), change nothing")


class ProfileRequest(_Body):
    replica: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        None, description="the replica to profile (kaip status lists them); default: a ready one"
    )
    seconds: float = Field(10.0, gt=0, le=120, description="how long to sample")
    rate: float = Field(100.0, gt=0, le=250, description="samples per second")
    format: Literal["speedscope", "collapsed"] = "speedscope"


class ActionRequest(_Body):
    who: Text | None = Field(None, description="the person acting, for the event log")


class PromoteRequest(ActionRequest):
    full: bool = Field(
        False, description="promote now, skipping the remaining steps, even at a manual pause"
    )


class UndoRequest(ActionRequest):
    to_revision: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{1,64}$",
        description="the revision (or a unique prefix) to go back to; default: the one "
        "before stable",
    )


B = TypeVar("B", bound=_Body)


class NoCostsError(PlatformError):
    """This control API was started without a cost book."""

    http_status = 503


class BadRequestError(KaipError):
    """The body is not what the route takes."""

    http_status = 400


class ConflictError(KaipError):
    """The controller cannot do this now (no such rollout, a name clash, ...)."""

    http_status = 409


class SpecLoadTimeoutError(KaipError):
    http_status = 503


MAX_SINCE_SECONDS = 31 * 24 * 3600.0


def _since_seconds(raw: str | None) -> float | None:
    """``GET /_kaip/cost?since=SECONDS``: a window ending now (None: since replicas started)."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_SINCE_SECONDS:
        raise BadRequestError(
            f"since={raw[:40]!r}: give seconds, more than 0 and at most {MAX_SINCE_SECONDS:.0f} "
            "(kaip cost --since 1h sends 3600)"
        )
    return seconds


MAX_COST_RESOURCES = 1000


def _resources(names: list[str]) -> set[str]:
    """``GET /_kaip/cost?resource=A&resource=B``: only those resources (none: all)."""
    if len(names) > MAX_COST_RESOURCES or any(not 0 < len(n) <= 253 for n in names):
        raise BadRequestError(
            f"resource: at most {MAX_COST_RESOURCES} names of 1 to 253 characters each"
        )
    return set(names)


def admin_app(controller: Controller, costs: CostBook | None = None) -> Starlette:
    reading = asyncio.Semaphore(1)  # one spec load at a time, released when its thread ends

    async def get_status(request: Request) -> JSONResponse:
        _principal(request, "viewer", "read the status")
        return JSONResponse(status(controller))

    async def deploy(request: Request) -> JSONResponse:
        principal = _principal(request, "deployer", "deploy")
        body = _parse(DeployRequest, await request.body())
        specs = await _load(body.paths)
        for resource in specs.resources:
            owner = getattr(resource.spec, "owner", "")
            require_owner(principal, owner, f"deploy {resource.kind} {resource.metadata.name}")
        notices = check_local(specs)  # a SpecError is a 422, as a bad spec
        if body.dry_run:
            plan = await controller.submit(lambda: dry_run(controller, specs))
            return JSONResponse({"changes": notices, "plan": plan, "rollouts": []})
        commit = Commit(body.commit.sha, body.commit.committed_at) if body.commit else None
        who = body.who or principal.name

        async def apply() -> tuple[list[str], list[dict[str, Any]]]:
            changes = await controller.apply(specs, who, commit)
            return changes, _followed(controller, specs)  # read in the same turn of the loop

        try:
            changes, followed = await controller.submit(apply)
        except StorageError:
            raise  # 503: .kaip/ cannot be written now; it says why
        except PlatformError as exc:
            raise ConflictError(exc.message) from None
        return JSONResponse({"changes": [*notices, *changes], "rollouts": followed})

    async def _load(paths: list[str]) -> SpecSet:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(reading.acquire(), SPEC_LOAD_TIMEOUT_S)
        except TimeoutError:
            raise SpecLoadTimeoutError(
                "another spec is still being read; retry when it is done"
            ) from None
        future = loop.run_in_executor(None, load_paths, [Path(p) for p in paths])
        future.add_done_callback(lambda _: reading.release())
        try:
            return await asyncio.wait_for(asyncio.shield(future), SPEC_LOAD_TIMEOUT_S)
        except TimeoutError:
            raise SpecLoadTimeoutError(
                f"reading the spec took longer than {SPEC_LOAD_TIMEOUT_S:g} s; nothing changed"
            ) from None

    async def rollout_status(request: Request) -> JSONResponse:
        _principal(request, "viewer", "read rollouts")
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
        return await _act(
            request, "promote", PromoteRequest,
            lambda name, who, body: controller.promote(name, who, full=body.full),
        )  # fmt: skip

    async def abort(request: Request) -> JSONResponse:
        return await _act(
            request, "abort", ActionRequest, lambda name, who, _: controller.abort(name, who)
        )

    async def undo(request: Request) -> JSONResponse:
        return await _act(
            request, "undo", UndoRequest,
            lambda name, who, body: controller.undo(name, who, body.to_revision),
        )  # fmt: skip

    async def _act(
        request: Request, verb: str, model: type[ActionRequest], action: Any
    ) -> JSONResponse:
        principal = _principal(request, "deployer", f"{verb} a rollout")
        name = request.path_params["name"]
        run = controller.resources.get(name)
        if run is not None:
            owner = run.current.resource.spec.owner
            require_owner(principal, owner, f"{verb} the rollout of {run.kind} {name}")
        body = _parse(model, await request.body())
        who = body.who or principal.name
        try:
            message = await controller.submit(lambda: action(name, who, body))
        except StorageError:
            raise
        except PlatformError as exc:
            raise ConflictError(exc.message) from None
        return JSONResponse({"message": message})

    async def events(request: Request) -> JSONResponse:
        _principal(request, "viewer", "read events")
        return JSONResponse({"events": [asdict(e) for e in controller.state.events(limit=200)]})

    async def cost(request: Request) -> JSONResponse:
        _principal(request, "viewer", "read costs")
        if costs is None:
            raise NoCostsError("cost accounting is not running in this kaip up")
        by = request.query_params.get("by", "revision")
        basis = request.query_params.get("basis", "usage")
        if by not in BY or basis not in BASES:
            raise BadRequestError(
                f"by={by!r}, basis={basis!r}: by is one of {', '.join(BY)}; basis is usage "
                "(idle apart) or allocation (idle spread over requests)"
            )
        since = _since_seconds(request.query_params.get("since"))
        wanted = _resources(request.query_params.getlist("resource"))
        attributions, covered = costs.attributions(basis, since)  # type: ignore[arg-type]
        if wanted:
            attributions = [a for a in attributions if a.window.resource in wanted]
        answer = report(attributions, by, basis, costs.coefficients)  # type: ignore[arg-type]
        answer["price_overrides"] = {**costs.prices.to_json(), "node_type": costs.node_type}
        return JSONResponse({**answer, "since_seconds": since, "covered_seconds": covered})

    async def profile(request: Request) -> JSONResponse:
        _principal(request, "deployer", "profile a replica")
        body = _parse(ProfileRequest, await request.body())
        name = request.path_params["name"]
        answer = await profile_replica(
            controller, name, body.replica, body.seconds, body.rate, body.format
        )
        return JSONResponse(answer)

    async def openapi(request: Request) -> JSONResponse:
        _principal(request, "viewer", "read the API description")
        return JSONResponse(openapi_document())

    async def kaip_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, KaipError)
        if isinstance(exc, SpecError):
            problems = [p.render() for p in exc.problems]
            return JSONResponse(
                {"error": "the spec is invalid", "problems": problems}, status_code=422
            )
        return _error(exc.http_status, exc.message)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    routes = [
        Route("/_kaip/status", get_status),
        Route("/_kaip/deploy", deploy, methods=["POST"]),
        Route("/_kaip/rollouts/{name}", rollout_status),
        Route("/_kaip/rollouts/{name}/promote", promote, methods=["POST"]),
        Route("/_kaip/rollouts/{name}/abort", abort, methods=["POST"]),
        Route("/_kaip/rollouts/{name}/undo", undo, methods=["POST"]),
        Route("/_kaip/events", events),
        Route("/_kaip/cost", cost),
        Route("/_kaip/profile/{name}", profile, methods=["POST"]),
        Route("/_kaip/openapi.json", openapi),
    ]
    v1 = [
        Route(V1_PATHS[r.path], r.endpoint, methods=sorted(r.methods or ()))
        for r in routes
        if r.path in V1_PATHS
    ]
    return Starlette(
        routes=[*v1, *routes],
        exception_handlers={KaipError: kaip_error, HTTPException: http_error},
    )


def _followed(controller: Controller, specs: SpecSet) -> list[dict[str, Any]]:
    """What ``kaip deploy --wait`` follows: each resource's running rollout (or its readiness)."""
    out = []
    for doc in specs.documents:
        run = controller.resources.get(doc.resource.metadata.name)
        if run is None or run.kind != doc.resource.kind:
            continue
        rollout_id = run.rollout.record.id if run.rollout is not None else None
        out.append({"kind": run.kind, "name": run.name, "rollout_id": rollout_id})
    return out


def _principal(request: Request, needed: Role, action: str) -> Principal:
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    return require(principal, needed, action)


def _parse(model: type[B], raw: bytes) -> B:
    """The body as ``model``, or a 400 naming each wrong field."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or "the body"
            problems.append(f"{where}: {error['msg']}")
        raise BadRequestError("the request body is wrong: " + "; ".join(problems)) from None


def _error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


def v1_openapi_paths() -> dict[str, Any]:
    """The operations of :data:`V1_PATHS` as OpenAPI path items, under their ``/api/v1`` names
    (the portal's document lists them beside its own)."""
    paths = openapi_document()["paths"]
    return {v1: {**paths[old]} for old, v1 in V1_PATHS.items()}


def openapi_document() -> dict[str, Any]:
    """This API as OpenAPI 3.1, for clients and for fuzzing it (schemathesis)."""
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    }
    json_object = {"type": "object"}
    refusals = {
        str(code): {"description": text, "content": {"application/json": {"schema": error}}}
        for code, text in (
            (401, "no valid credential"),
            (403, "a role or a page that may not do this"),
            (421, "a Host the control port does not answer to"),
        )
    }

    def answer(description: str, *errors: tuple[int, str]) -> dict[str, Any]:
        responses: dict[str, Any] = {
            "200": {
                "description": description,
                "content": {"application/json": {"schema": json_object}},
            },
            **refusals,
        }
        for code, text in errors:
            responses[str(code)] = {
                "description": text,
                "content": {"application/json": {"schema": error}},
            }
        return responses

    def body(model: type[_Body]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)  # CommitRef, the one nested model, is in components
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "maxLength": 253},
        "description": "a Model or App that kaip up runs",
    }
    changing = ((400, "a body the route does not take"), (409, "not possible now"),
                (413, "a body over 1 MiB"), (415, "a body that is not JSON"))  # fmt: skip
    commit_schema = CommitRef.model_json_schema()
    return {
        "openapi": "3.1.0",
        "info": {"title": "kaip up control API", "version": "1"},
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {"CommitRef": commit_schema},
        },
        "security": [{"token": []}],
        "paths": {
            "/_kaip/status": {"get": {"operationId": "status", "responses": answer("status")}},
            "/_kaip/events": {"get": {"operationId": "events", "responses": answer("events")}},
            "/_kaip/cost": {
                "get": {
                    "operationId": "cost",
                    "parameters": [
                        {"name": "by", "in": "query", "schema": {"enum": list(BY)}},
                        {"name": "basis", "in": "query", "schema": {"enum": list(BASES)}},
                        {
                            "name": "resource",
                            "in": "query",
                            "schema": {
                                "type": "array",
                                "items": {"type": "string", "minLength": 1, "maxLength": 253},
                                "maxItems": MAX_COST_RESOURCES,
                            },
                            "style": "form",
                            "explode": True,
                        },
                        {
                            "name": "since",
                            "in": "query",
                            "schema": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "maximum": MAX_SINCE_SECONDS,
                            },
                        },
                    ],
                    "responses": answer(
                        "cost, energy and carbon by the key asked for",
                        (400, "an unknown by or basis, a since out of range, too many resources"),
                        (503, "no cost accounting in this kaip up"),
                    ),
                }
            },
            "/_kaip/openapi.json": {
                "get": {"operationId": "openapi", "responses": answer("this document")}
            },
            "/_kaip/deploy": {
                "post": {
                    "operationId": "deploy",
                    "requestBody": body(DeployRequest),
                    "responses": answer(
                        "what changed",
                        *changing,
                        (422, "an invalid spec, with every problem"),
                        (503, "reading the spec took too long, or .kaip/ cannot be written"),
                    ),
                }
            },
            "/_kaip/rollouts/{name}": {
                "get": {
                    "operationId": "rollout",
                    "parameters": [name],
                    "responses": answer("the rollout and its history", (404, "no such name")),
                }
            },
            "/_kaip/profile/{name}": {
                "post": {
                    "operationId": "profile",
                    "parameters": [name],
                    "requestBody": body(ProfileRequest),
                    "responses": answer(
                        "the replica's profile (speedscope JSON or collapsed stacks)",
                        *changing,
                        (404, "no such Model or replica"),
                    ),
                }
            },
            **{
                f"/_kaip/rollouts/{{name}}/{verb}": {
                    "post": {
                        "operationId": verb,
                        "parameters": [name],
                        "requestBody": body(model),
                        "responses": answer("what happened", *changing),
                    }
                }
                for verb, model in (
                    ("promote", PromoteRequest),
                    ("abort", ActionRequest),
                    ("undo", UndoRequest),
                )
            },
        },
    }

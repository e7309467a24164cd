"""The portal on ``kaip up``'s control port: the catalog at ``/``, ``/resources/NAME``, log in/out.

:func:`control_port_app` is what the control port serves: ``/_kaip/...`` goes to the admin API
behind :class:`~kaip.local.controller.guard.ControlGuard` (bearer tokens only, never a cookie),
everything else to the portal behind :class:`PortalGuard`, which refuses a foreign Host (421) or
Origin (403) exactly as the admin API does, bounds bodies to :data:`MAX_FORM_BYTES` and forbids
every script, frame and foreign form target by Content-Security-Policy.

The pages need a principal: a bearer token, or the session cookie that ``POST /login`` sets when
given a token the admin API accepts (:mod:`~kaip.local.controller.sessions`); without one a page
answers ``303`` to ``/login``. A session has the role and owners of the token that opened it.
Its forms are log in (needs the token itself), log out, and a running rollout's promote and
abort (each needs the session's CSRF token; the actions also the deployer role and, for a
deployer scoped to owners, one of them); every form also passes the Origin check, so another
page, an App on the traffic port included, can post none of them.

Reads the controller's state in the event loop's own turn and never changes it. Traffic numbers
come from the gateway's cumulative counters (:class:`~kaip.local.gateway.signals.GatewaySignals`)
when the gateway keeps them, and are left out when it does not.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import asdict
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from kaip.errors import ForbiddenError, KaipError, PayloadTooLargeError, PlatformError
from kaip.local.controller import dora_source
from kaip.local.controller.admin import admin_app
from kaip.local.controller.auth import Authenticator, Principal, require, require_owner
from kaip.local.controller.guard import (
    SECURITY_HEADERS,
    ASGIApp,
    ControlGuard,
    GuardPolicy,
    Receive,
    Scope,
    Send,
    bounded_io,
    check_site,
    send_error,
)
from kaip.local.controller.portal_catalog import parse_query, select
from kaip.local.controller.portal_dora import delivery_page
from kaip.local.controller.portal_live import (
    MIN_LOOK_S,
    SCRIPTS,
    STATIC_DIR,
    VENDORED,
    SlotStream,
    StreamSlots,
    live_fragments,
    live_section,
    rollout_stream,
)
from kaip.local.controller.portal_openapi import portal_openapi
from kaip.local.controller.portal_pages import catalog_page, login_page, page, resource_page
from kaip.local.controller.portal_playground import metadata, playground_section, send, template
from kaip.local.controller.portal_traffic import TrafficReader
from kaip.local.controller.sessions import (
    COOKIE,
    SESSION_TTL_S,
    Session,
    SessionStore,
    csrf_matches,
)
from kaip.local.controller.status import resource_rows
from kaip.spec import Model

if TYPE_CHECKING:
    from kaip.local.controller.costs import CostBook
    from kaip.local.controller.loop import Controller

MAX_FORM_BYTES = 4096
HISTORY = 20
PORTAL_CSP = (
    b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
    b"frame-ancestors 'none'; base-uri 'none'"
)
LIVE_CSP = PORTAL_CSP + b"; script-src 'self'; connect-src 'self'"
"""A live page's: its own vendored scripts (``/static/``) and its event stream, nothing else."""
_HEADERS = [
    *(h for h in SECURITY_HEADERS if h[0] not in {b"content-security-policy", b"referrer-policy"}),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" makes a form's Origin "null"
]


class PortalGuard:
    """Host and Origin as the admin API checks them, bounded bodies, strict headers."""

    def __init__(self, app: ASGIApp, policy: GuardPolicy) -> None:
        self._app = app
        self._policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = Headers(scope=scope)
        try:
            check_site(headers, self._policy)
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_FORM_BYTES:
                raise _too_large()
        except KaipError as exc:
            await send_error(send, exc)
            return
        bounded_receive, secured_send = bounded_io(
            receive, _default_csp(send), MAX_FORM_BYTES, _too_large, _HEADERS
        )
        await self._app(scope, bounded_receive, secured_send)


def _default_csp(send: Send) -> Send:
    """``send`` that adds :data:`PORTAL_CSP` (no script) to a response that has no policy of
    its own: only a live page names :data:`LIVE_CSP` itself."""

    async def with_csp(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"content-security-policy" for name, _ in headers):
                headers.append((b"content-security-policy", PORTAL_CSP))
            message["headers"] = headers
        await send(message)

    return with_csp


def _too_large() -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the portal takes forms of at most {MAX_FORM_BYTES} bytes")


def control_port_app(
    controller: Controller,
    bearer: Authenticator,
    policy: GuardPolicy,
    *,
    costs: CostBook | None = None,
    token_file: str = ".kaip/admin.token",
    sessions: SessionStore | None = None,
) -> ASGIApp:
    """The control port: the admin API under ``/_kaip/``, the portal everywhere else."""
    admin = ControlGuard(admin_app(controller, costs), bearer, policy)
    store = sessions if sessions is not None else SessionStore()
    portal = PortalGuard(portal_app(controller, bearer, store, token_file), policy)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and not (path == "/_kaip" or path.startswith("/_kaip/")):
            await portal(scope, receive, send)
        else:
            await admin(scope, receive, send)

    return app


def portal_app(
    controller: Controller,
    bearer: Authenticator,
    sessions: SessionStore,
    token_file: str,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    traffic = TrafficReader()
    streams = StreamSlots()

    def who(request: Request) -> tuple[Principal | None, str | None]:
        """The principal (session or bearer) and, for a session, its CSRF token."""
        session = sessions.find(request.headers)
        if session is not None:
            return session.principal, session.csrf
        return bearer.authenticate(request.headers), None

    def rows(names: Sequence[str]) -> list[dict[str, Any]]:
        """The status, owner and traffic of the resources named (that still run), in order."""
        numbers = traffic.read(controller)
        runs = [controller.resources[n] for n in names if n in controller.resources]
        return [
            {
                **row,
                "owner": run.current.resource.spec.owner,
                "traffic": numbers.get(row["name"]),
            }
            for run, row in zip(runs, resource_rows(controller, runs), strict=True)
        ]

    def catalog_data(request: Request) -> dict[str, Any]:
        query = parse_query(request.query_params)
        entries = [(n, r.current.resource.spec.owner) for n, r in controller.resources.items()]
        chosen = select(entries, query)
        return {
            "api_version": dora_source.API_VERSION,
            "items": rows(chosen.names),
            "total": chosen.total,
            "page": chosen.page,
            "pages": chosen.pages,
            "per_page": chosen.per_page,
            "q": query.q,
            "owner": query.owner,
            "owners": sorted({owner for _, owner in entries}),
        }

    async def catalog(request: Request) -> Response:
        principal, csrf = who(request)
        if principal is None:
            return RedirectResponse("/login", status_code=303)
        return HTMLResponse(catalog_page(catalog_data(request), csrf=csrf))

    async def api_resources(request: Request) -> Response:
        if who(request)[0] is None:
            return _api_error(401, "log in or send Authorization: Bearer TOKEN")
        try:
            return JSONResponse(catalog_data(request))
        except KaipError as exc:
            return _api_error(exc.http_status, exc.message)

    async def resource(request: Request) -> Response:
        principal, csrf = who(request)
        if principal is None:
            return RedirectResponse("/login", status_code=303)
        name = request.path_params["name"]
        row = next(iter(rows([name])), None)
        if row is None:
            body = "<h1>Not found</h1><p>No Model or App by that name runs here.</p>"
            return HTMLResponse(page("Not found", body, csrf=csrf), status_code=404)
        run = controller.resources[name]
        history = []
        for record in controller.state.rollouts(run.kind, name, limit=HISTORY):
            item: dict[str, Any] = asdict(record)
            item["verdicts"] = [asdict(s) for s in controller.state.steps(record.id)]
            history.append(item)
        live = live_section(name, live_fragments(row, active_verdicts(name), csrf))
        playground = await playground_of(name, csrf)
        return HTMLResponse(
            resource_page(row, history, csrf=csrf, live=live, head=SCRIPTS, playground=playground),
            headers={"content-security-policy": LIVE_CSP.decode()},
        )

    def oip_name(name: str) -> str | None:
        """The name ``name`` is served under over OIP v2, if it is such a Model."""
        run = controller.resources.get(name)
        if run is None or not isinstance(run.current.resource, Model):
            return None
        if "oip-v2" not in run.current.resource.spec.serve.protocols:
            return None
        names = run.served_names.get(run.current.revision, ())
        return names[0] if names else None

    async def playground_of(
        name: str, csrf: str | None, body: str | None = None, result: Any = None
    ) -> str:
        served = oip_name(name)
        if served is None:
            return ""
        gateway = controller.config.gateway_url
        if body is None:
            body = template(await metadata(gateway, served))
        return playground_section(name, served, body, csrf, result)

    async def session_form(request: Request) -> tuple[Session, Mapping[str, str]] | Response:
        """A form the portal's own page posted: its fields and the session it came with, or the
        answer that refuses it (bad form, no session: the login page, a CSRF token not the
        session's: 403)."""
        form = await _form(request)
        if isinstance(form, Response):
            return form
        session = sessions.find(request.headers)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        if not csrf_matches(session, form.get("csrf", "")):
            body = "<h1>Refused</h1><p>This form is not from your session's page.</p>"
            return HTMLResponse(page("Refused", body), status_code=403)
        return session, form

    async def playground(request: Request) -> Response:
        """Sends the playground's request to the gateway and shows the answer."""
        posted = await session_form(request)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        name = request.path_params["name"]
        served = oip_name(name)
        if served is None:
            body = "<h1>Not found</h1><p>No Model served over OIP v2 by that name runs here.</p>"
            return HTMLResponse(page("Not found", body, csrf=session.csrf), status_code=404)
        text = form.get("body", "")
        result = await send(controller.config.gateway_url, served, text)
        section = await playground_of(name, session.csrf, text, result)
        body = (
            f"<h1>Playground · Model {escape(name)}</h1>{section}"
            f'<p><a href="/resources/{escape(quote(name, safe=""))}">Back to {escape(name)}</a></p>'
        )
        return HTMLResponse(page("Playground", body, csrf=session.csrf))

    def active_verdicts(name: str) -> list[dict[str, Any]]:
        run = controller.resources.get(name)
        if run is None or run.rollout is None:
            return []
        return [asdict(s) for s in controller.state.steps(run.rollout.record.id)]

    def render_live(name: str, csrf: str | None) -> dict[str, str] | None:
        run = controller.resources.get(name)
        if run is None:
            return None
        (row,) = resource_rows(controller, [run])
        return live_fragments(row, active_verdicts(name), csrf)

    async def rollout_events(request: Request) -> Response:
        principal, csrf = who(request)
        if principal is None:
            return _api_error(401, "log in or send Authorization: Bearer TOKEN")
        name = request.path_params["name"]
        if name not in controller.resources:
            return _api_error(404, f"no Model or App named {name[:253]!r} runs here")
        if not streams.take():
            return _api_error(503, f"{streams.most} event streams are open: close a page")
        every = max(controller.config.tick_seconds, MIN_LOOK_S)
        return SlotStream(rollout_stream(lambda: render_live(name, csrf), every), streams)

    async def promote(request: Request) -> Response:
        return await act(request, "promote", lambda name, who, _: controller.promote(name, who))

    async def abort(request: Request) -> Response:
        return await act(request, "abort", lambda name, who, _: controller.abort(name, who))

    async def undo(request: Request) -> Response:
        return await act(
            request,
            "roll back",
            lambda name, who, form: controller.undo(name, who, form.get("to_revision") or None),
        )

    async def act(
        request: Request,
        verb: str,
        action: Callable[[str, str, Mapping[str, str]], Awaitable[str]],
    ) -> Response:
        """A rollout action from the portal's own form: session, CSRF token, role, owner."""
        posted = await session_form(request)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        name = request.path_params["name"]
        run = controller.resources.get(name)
        if run is None:
            body = "<h1>Not found</h1><p>No Model or App by that name runs here.</p>"
            return HTMLResponse(page("Not found", body, csrf=session.csrf), status_code=404)
        principal = session.principal
        what = (
            f"{verb} {run.kind} {name}"
            if verb == "roll back"
            else f"{verb} the rollout of {run.kind} {name}"
        )
        try:
            require(principal, "deployer", what)
            require_owner(principal, run.current.resource.spec.owner, what)
        except ForbiddenError as exc:
            body = f'<h1>Not allowed</h1><p role="alert">{escape(exc.message)}.</p>'
            return HTMLResponse(page("Not allowed", body, csrf=session.csrf), status_code=403)
        try:
            message = await controller.submit(lambda: action(name, principal.name, form))
        except PlatformError as exc:
            body = f'<h1>Not done</h1><p role="alert">{escape(exc.message)}</p>'
            return HTMLResponse(page("Not done", body, csrf=session.csrf), status_code=409)
        body = (
            f'<h1>Done</h1><p role="status">{escape(message)}</p>'
            f'<p><a href="/resources/{escape(quote(name, safe=""))}">Back to {escape(name)}</a></p>'
        )
        return HTMLResponse(page("Done", body, csrf=session.csrf))

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in VENDORED:
            return _api_error(404, "no such file")
        return FileResponse(
            STATIC_DIR / name,
            media_type="text/javascript",
            headers={"cache-control": "public, max-age=86400"},
        )

    def delivery_data(request: Request) -> dict[str, Any]:
        query = request.query_params
        metrics = dora_source.dora(controller, query, clock())
        return dora_source.as_json(
            metrics,
            owner=dora_source.name_filter(query, "owner"),
            resource=dora_source.name_filter(query, "resource"),
        )

    async def delivery(request: Request) -> Response:
        principal, csrf = who(request)
        if principal is None:
            return RedirectResponse("/login", status_code=303)
        owners = sorted(set(dora_source.owners(controller).values()) - {""})
        return HTMLResponse(delivery_page(delivery_data(request), owners, csrf=csrf))

    async def api_dora(request: Request) -> Response:
        if who(request)[0] is None:
            return _api_error(401, "log in or send Authorization: Bearer TOKEN")
        try:
            return JSONResponse(delivery_data(request))
        except KaipError as exc:
            return _api_error(exc.http_status, exc.message)

    async def api_openapi(request: Request) -> Response:
        if who(request)[0] is None:
            return _api_error(401, "log in or send Authorization: Bearer TOKEN")
        return JSONResponse(portal_openapi())

    async def login_form(request: Request) -> Response:
        if who(request)[0] is not None:
            return RedirectResponse("/", status_code=303)
        return HTMLResponse(login_page(token_file=token_file))

    async def login(request: Request) -> Response:
        form = await _form(request)
        if isinstance(form, Response):
            return form
        token = form.get("token", "").strip()
        principal = bearer.authenticate({"authorization": f"Bearer {token}"}) if token else None
        if principal is None:
            error = "That is not this run's token: copy it again from the file named below."
            return HTMLResponse(login_page(error=error, token_file=token_file), status_code=401)
        sid, _ = sessions.open(principal)
        answer = RedirectResponse("/", status_code=303)
        answer.set_cookie(
            COOKIE, sid, max_age=int(SESSION_TTL_S), path="/", httponly=True, samesite="strict"
        )
        return answer

    async def logout(request: Request) -> Response:
        form = await _form(request)
        if isinstance(form, Response):
            return form
        session = sessions.find(request.headers)
        if session is None or not csrf_matches(session, form.get("csrf", "")):
            body = "<h1>Not logged out</h1><p>This form is not from your session's page.</p>"
            return HTMLResponse(page("Refused", body), status_code=403)
        sessions.close(request.headers)
        answer = RedirectResponse("/login", status_code=303)
        answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return answer

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KaipError)
        body = f"<h1>{exc.http_status}</h1><p>{escape(exc.message)}</p>"
        return HTMLResponse(page("Refused", body), exc.http_status)

    return Starlette(
        exception_handlers={KaipError: refused},
        routes=[
            Route("/", catalog, methods=["GET"]),
            Route("/resources/{name}", resource, methods=["GET"]),
            Route("/delivery", delivery, methods=["GET"]),
            Route("/api/v1/dora", api_dora, methods=["GET"]),
            Route("/api/v1/resources", api_resources, methods=["GET"]),
            Route("/api/v1/openapi.json", api_openapi, methods=["GET"]),
            Route("/resources/{name}/events", rollout_events, methods=["GET"]),
            Route("/resources/{name}/promote", promote, methods=["POST"]),
            Route("/resources/{name}/abort", abort, methods=["POST"]),
            Route("/resources/{name}/undo", undo, methods=["POST"]),
            Route("/resources/{name}/playground", playground, methods=["POST"]),
            Route("/static/{name}", static, methods=["GET"]),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
        ],
    )


def _api_error(status: int, message: str) -> JSONResponse:
    """The API's error shape, as the admin API's: ``{"error": MESSAGE}``."""
    return JSONResponse({"error": message}, status_code=status)


async def _form(request: Request) -> Mapping[str, str] | Response:
    """A urlencoded form's fields (the first value of each), or a 415 page."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        body = "<h1>Unsupported form</h1><p>Send the portal's own form.</p>"
        return HTMLResponse(page("Refused", body), status_code=415)
    raw = (await request.body()).decode("utf-8", errors="replace")
    try:
        fields = parse_qs(raw, keep_blank_values=True, max_num_fields=8)
    except ValueError:
        return HTMLResponse(page("Refused", "<h1>Too many fields</h1>"), status_code=400)
    return {key: values[0] for key, values in fields.items() if values}

"""The portal as an ASGI app: the pages, ``/api/v1`` and the forms, on a :class:`PortalSource`.

The same app fronts ``kaip up`` (:mod:`kaip.portal.local`) and a cluster
(:mod:`kaip.portal.kube`): it reads and acts only through the source, and asks ``authenticate``
who a request comes from (``kaip up``'s tokens, or the cluster's TokenReview).
:class:`PortalGuard` refuses a foreign Host (421) or Origin (403), bounds bodies to
:data:`MAX_FORM_BYTES` and forbids every script, frame and foreign form target by
Content-Security-Policy.

The pages need a principal: a bearer token, or the session cookie that ``POST /login`` sets when
given a token ``authenticate`` accepts (:mod:`~kaip.local.controller.sessions`); without one a
page answers ``303`` to ``/login``, the API ``401``. Its forms are log in (needs the token
itself), log out, and a resource's promote, abort and roll back (each needs the session's CSRF
token; whether the principal may act, the source decides); every form also passes the Origin
check, so another page, an App on the traffic port included, can post none of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from html import escape
from typing import Any
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

from kaip.errors import (
    AccessError,
    ForbiddenError,
    KaipError,
    PayloadTooLargeError,
    PlatformError,
)
from kaip.local.controller.auth import Principal
from kaip.local.controller.guard import (
    SECURITY_HEADERS,
    ASGIApp,
    GuardPolicy,
    Receive,
    Scope,
    Send,
    bounded_io,
    check_site,
    send_error,
)
from kaip.local.controller.sessions import (
    COOKIE,
    SESSION_TTL_S,
    Session,
    SessionStore,
    csrf_matches,
)
from kaip.portal import delivery
from kaip.portal.catalog import parse_query, select
from kaip.portal.charts import charts_section
from kaip.portal.dora import delivery_page
from kaip.portal.live import (
    SCRIPTS,
    STATIC_DIR,
    VENDORED,
    SlotStream,
    StreamSlots,
    live_fragments,
    live_section,
    rollout_stream,
)
from kaip.portal.logs import logs_fragment, logs_section
from kaip.portal.openapi import portal_openapi
from kaip.portal.overview import endpoints, overview_section
from kaip.portal.pages import catalog_page, login_page, page, resource_page
from kaip.portal.playground import chat, metadata, playground_section, send, template
from kaip.portal.profile import MAX_SECONDS as PROFILE_MAX_SECONDS
from kaip.portal.profile import SECONDS as PROFILE_SECONDS
from kaip.portal.profile import profile_form, profile_result
from kaip.portal.source import Action, Playground, PortalSource, Row

Authenticate = Callable[[Mapping[str, str]], Awaitable[Principal | None]]
"""Who a request's headers come from, or None."""


@dataclass(frozen=True)
class LoginText:
    """What the login page says: where a token comes from, and why one was refused."""

    hint: str
    refused: str


ACTIONS: tuple[Action, ...] = ("promote", "abort", "undo")
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


def portal_app(
    source: PortalSource,
    authenticate: Authenticate,
    sessions: SessionStore,
    login_text: LoginText,
    clock: Callable[[], float] = time.time,
    more_api: Mapping[str, Any] | None = None,
) -> Starlette:
    streams = StreamSlots()

    async def who(request: Request) -> tuple[Principal | None, str | None]:
        """The principal (session or bearer) and, for a session, its CSRF token."""
        session = sessions.find(request.headers)
        if session is not None:
            return session.principal, session.csrf
        return await authenticate(request.headers), None

    async def api_who(request: Request) -> Principal | Response:
        """The principal of an API request, or the JSON answer that refuses it."""
        try:
            principal = (await who(request))[0]
        except AccessError as exc:
            return _api_error(exc.http_status, exc.message)
        if principal is None:
            return _api_error(401, "log in or send Authorization: Bearer TOKEN")
        return principal

    async def catalog_data(request: Request) -> dict[str, Any]:
        query = parse_query(request.query_params)
        entries = await source.entries()
        chosen = select([(e.name, e.owner) for e in entries], query)
        return {
            "api_version": delivery.API_VERSION,
            "items": await source.rows(chosen.names),
            "total": chosen.total,
            "page": chosen.page,
            "pages": chosen.pages,
            "per_page": chosen.per_page,
            "q": query.q,
            "owner": query.owner,
            "owners": sorted({e.owner for e in entries}),
        }

    async def catalog(request: Request) -> Response:
        principal, csrf = await who(request)
        if principal is None:
            return RedirectResponse("/login", status_code=303)
        data = await catalog_data(request)
        return HTMLResponse(catalog_page(data, csrf=csrf, note=source.traffic_note))

    async def api_resources(request: Request) -> Response:
        if isinstance(refused := await api_who(request), Response):
            return refused
        try:
            return JSONResponse(await catalog_data(request))
        except KaipError as exc:
            return _api_error(exc.http_status, exc.message)

    async def one_row(name: str) -> Row | None:
        return next(iter(await source.rows([name])), None)

    async def resource(request: Request) -> Response:
        principal, csrf = await who(request)
        if principal is None:
            return RedirectResponse("/login", status_code=303)
        name = request.path_params["name"]
        row = await one_row(name)
        if row is None:
            return _not_found(csrf)
        history = await source.history(name, HISTORY)
        live = live_section(name, live_fragments(row, await source.verdicts(name), csrf))
        target = await source.playground(name)
        body = None
        if target is not None and "oip-v2" in target.protocols:
            body = template(await metadata(target))
        playground = await playground_of(name, target, csrf, body)
        about = await source.overview(name)
        tailed = await source.log_tail(name)
        series = await source.traffic_series(name) if row["kind"] != "TrainingJob" else None
        return HTMLResponse(
            resource_page(
                row,
                history,
                csrf=csrf,
                live=live,
                head=SCRIPTS,
                playground=playground,
                overview="" if about is None else overview_section(about, body),
                logs="" if tailed is None else logs_section(name, logs_fragment(*tailed)),
                charts="" if series is None else charts_section(*series),
                profile=profile_form(name, csrf)
                if source.profiles and row["kind"] == "Model"
                else "",
            ),
            headers={"content-security-policy": LIVE_CSP.decode()},
        )

    async def api_resource(request: Request) -> Response:
        """``GET /api/v1/resources/NAME``: its row, and its manifest and endpoints."""
        if isinstance(refused := await api_who(request), Response):
            return refused
        name = request.path_params["name"]
        row, about = await one_row(name), await source.overview(name)
        if row is None or about is None:
            return _api_error(404, f"no Model or App named {name[:253]!r} runs here")
        ways = [{"what": what, "request": where} for what, where in endpoints(about)]
        return JSONResponse({**row, "manifest": about.manifest, "endpoints": ways})

    async def playground_of(
        name: str,
        target: Playground | None,
        csrf: str | None,
        body: str | None = None,
        result: Any = None,
        said: Any = None,
    ) -> str:
        """The playground section for ``target`` (the source's answer, already asked for)."""
        if target is None:
            return ""
        if body is None and "oip-v2" in target.protocols:
            body = template(await metadata(target))
        return playground_section(name, target, body or "{}", csrf, result, said)

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
        """Sends the playground's request and shows the answer."""
        posted = await session_form(request)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        name = request.path_params["name"]
        target = await source.playground(name)
        asked = "openai" if "message" in form else "oip-v2"
        if target is None or asked not in target.protocols:
            what = "OpenAI" if asked == "openai" else "OIP v2"
            body = f"<h1>Not found</h1><p>No Model served over {what} by that name runs here.</p>"
            return HTMLResponse(page("Not found", body, csrf=session.csrf), status_code=404)
        if asked == "openai":
            message = form["message"]
            said = (message, await chat(target, message))
            section = await playground_of(name, target, session.csrf, said=said)
        else:
            text = form.get("body", "")
            result = await send(target, text)
            section = await playground_of(name, target, session.csrf, text, result)
        body = (
            f"<h1>Playground · Model {escape(name)}</h1>{section}"
            f'<p><a href="/resources/{escape(quote(name, safe=""))}">Back to {escape(name)}</a></p>'
        )
        return HTMLResponse(page("Playground", body, csrf=session.csrf))

    async def render_live(name: str, csrf: str | None) -> dict[str, str] | None:
        row = await one_row(name)
        if row is None:
            return None
        return live_fragments(row, await source.verdicts(name), csrf)

    async def rollout_events(request: Request) -> Response:
        if isinstance(refused := await api_who(request), Response):
            return refused
        csrf = (await who(request))[1]
        name = request.path_params["name"]
        if await one_row(name) is None:
            return _api_error(404, f"no Model or App named {name[:253]!r} runs here")
        if not streams.take():
            return _api_error(503, f"{streams.most} event streams are open: close a page")
        return SlotStream(
            rollout_stream(lambda: render_live(name, csrf), source.live_every_s), streams
        )

    async def render_logs(name: str) -> dict[str, str] | None:
        tailed = await source.log_tail(name)
        return None if tailed is None else {"log": logs_fragment(*tailed)}

    async def log_events(request: Request) -> Response:
        """``GET /resources/NAME/logs``: the replicas' log tail, sent again whenever it changes."""
        if isinstance(refused := await api_who(request), Response):
            return refused
        name = request.path_params["name"]
        if await one_row(name) is None:  # as the rollout stream: the tail is read by the stream
            return _api_error(404, f"no Model or App named {name[:253]!r} runs here")
        if not streams.take():
            return _api_error(503, f"{streams.most} event streams are open: close a page")
        return SlotStream(rollout_stream(lambda: render_logs(name), source.live_every_s), streams)

    async def promote(request: Request) -> Response:
        return await act(request, "promote")

    async def abort(request: Request) -> Response:
        return await act(request, "abort")

    async def undo(request: Request) -> Response:
        return await act(request, "undo")

    async def act(request: Request, action: Action) -> Response:
        """A rollout action from the portal's own form: session and CSRF token here, whether
        the principal may, in the source."""
        posted = await session_form(request)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        name = request.path_params["name"]
        row = await one_row(name)
        if row is None:
            return _not_found(session.csrf)
        to_revision = form.get("to_revision") or None if action == "undo" else None
        try:
            message = await source.act(row, action, session.principal, to_revision)
        except ForbiddenError as exc:
            body = f'<h1>Not allowed</h1><p role="alert">{escape(exc.message)}.</p>'
            return HTMLResponse(page("Not allowed", body, csrf=session.csrf), status_code=403)
        except KaipError as exc:
            body = f'<h1>Not done</h1><p role="alert">{escape(exc.message)}</p>'
            status = _act_status(exc)
            return HTMLResponse(page("Not done", body, csrf=session.csrf), status_code=status)
        body = (
            f'<h1>Done</h1><p role="status">{escape(message)}</p>'
            f'<p><a href="/resources/{escape(quote(name, safe=""))}">Back to {escape(name)}</a></p>'
        )
        return HTMLResponse(page("Done", body, csrf=session.csrf))

    async def profile(request: Request) -> Response:
        """Profiles one of the Model's replicas for the seconds asked and shows where it ran."""
        posted = await session_form(request)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        name = request.path_params["name"]
        try:
            seconds = float(form.get("seconds") or PROFILE_SECONDS)
        except ValueError:
            seconds = -1.0
        if not 1 <= seconds <= PROFILE_MAX_SECONDS:
            body = (
                f'<h1>Not done</h1><p role="alert">seconds={escape(form.get("seconds", ""))!s}: '
                f"a number from 1 to {PROFILE_MAX_SECONDS:g}.</p>"
            )
            return HTMLResponse(page("Not done", body, csrf=session.csrf), status_code=400)
        try:
            got = await source.profile(name, session.principal, seconds)
        except ForbiddenError as exc:
            body = f'<h1>Not allowed</h1><p role="alert">{escape(exc.message)}.</p>'
            return HTMLResponse(page("Not allowed", body, csrf=session.csrf), status_code=403)
        except KaipError as exc:
            body = f'<h1>Not done</h1><p role="alert">{escape(exc.message)}</p>'
            return HTMLResponse(page("Not done", body, csrf=session.csrf), exc.http_status)
        if got is None:
            return _not_found(session.csrf)
        body = f"<h1>Profile · Model {escape(name)}</h1>" + profile_result(
            name, *got[:2], seconds, got[2]
        )
        return HTMLResponse(page("Profile", body, csrf=session.csrf))

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in VENDORED:
            return _api_error(404, "no such file")
        return FileResponse(
            STATIC_DIR / name,
            media_type="text/javascript",
            headers={"cache-control": "public, max-age=86400"},
        )

    async def delivery_data(request: Request) -> tuple[dict[str, Any], list[str]]:
        """The API's answer for the window asked, and every owner (for the page's filter)."""
        query = request.query_params
        since, until = delivery.window(query, clock())
        owner = delivery.name_filter(query, "owner")
        resource = delivery.name_filter(query, "resource")
        known = await source.deployments(until)
        metrics = delivery.metrics(known, since, until, owner=owner, resource=resource)
        owners = sorted(set(known.owners.values()) - {""})
        return delivery.as_json(metrics, owner=owner, resource=resource), owners

    async def delivery_view(request: Request) -> Response:
        principal, csrf = await who(request)
        if principal is None:
            return RedirectResponse("/login", status_code=303)
        data, owners = await delivery_data(request)
        return HTMLResponse(delivery_page(data, owners, csrf=csrf))

    async def api_dora(request: Request) -> Response:
        if isinstance(refused := await api_who(request), Response):
            return refused
        try:
            return JSONResponse((await delivery_data(request))[0])
        except KaipError as exc:
            return _api_error(exc.http_status, exc.message)

    async def api_openapi(request: Request) -> Response:
        if isinstance(refused := await api_who(request), Response):
            return refused
        return JSONResponse(portal_openapi(more_api))

    async def api_act(request: Request) -> Response:
        """``POST /api/v1/resources/NAME/promote|abort|undo``: a bearer token only (a cookie
        alone never acts), an optional JSON body (:class:`ActBody`): ``to_revision`` for undo,
        ``full`` for promote, ``who`` from an admin credential only (the CLI names the OS user
        with the run's token; a role token always acts as itself)."""
        try:
            principal = await authenticate(request.headers)
        except AccessError as exc:
            return _api_error(exc.http_status, exc.message)
        if principal is None:
            return _api_error(401, "send Authorization: Bearer TOKEN (a session cookie never acts)")
        action = request.path_params["action"]
        if action not in ACTIONS:
            return _api_error(404, f"no action {action[:40]!r}: promote, abort or undo")
        body = await _act_body(request)
        if isinstance(body, Response):
            return body
        if body.full and action != "promote":
            return _api_error(400, f"full: only promote takes it, not {action}")
        if body.to_revision is not None and action != "undo":
            return _api_error(400, f"to_revision: only undo takes it, not {action}")
        if body.who is not None and principal.role != "admin":
            return _api_error(
                403, f"{principal.name} acts as itself: only an admin credential may name who acts"
            )
        name = request.path_params["name"]
        row = await one_row(name)
        if row is None:
            return _api_error(404, f"no Model or App named {name[:253]!r} runs here")
        try:
            message = await source.act(
                row, action, principal, body.to_revision, who=body.who, full=body.full
            )
        except KaipError as exc:
            return _api_error(_act_status(exc), exc.message)
        return JSONResponse({"message": message})

    async def login_form(request: Request) -> Response:
        if (await who(request))[0] is not None:
            return RedirectResponse("/", status_code=303)
        return HTMLResponse(login_page(hint=login_text.hint))

    async def login(request: Request) -> Response:
        form = await _form(request)
        if isinstance(form, Response):
            return form
        token = form.get("token", "").strip()
        principal = await authenticate({"authorization": f"Bearer {token}"}) if token else None
        if principal is None:
            body = login_page(error=login_text.refused, hint=login_text.hint)
            return HTMLResponse(body, status_code=401)
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

    async def no_route(request: Request, exc: Exception) -> Response:
        """No route matched: under ``/api/`` the API's own 401 or 404, else a page."""
        if request.url.path.startswith("/api/"):
            if isinstance(refused := await api_who(request), Response):
                return refused
            return _api_error(404, "no such route: /api/v1/openapi.json lists them")
        body = "<h1>Not found</h1><p>No such page here.</p>"
        return HTMLResponse(page("Not found", body), status_code=404)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KaipError)
        body = f"<h1>{exc.http_status}</h1><p>{escape(exc.message)}</p>"
        return HTMLResponse(page("Refused", body), exc.http_status)

    return Starlette(
        exception_handlers={KaipError: refused, 404: no_route},
        routes=[
            Route("/", catalog, methods=["GET"]),
            Route("/resources/{name}", resource, methods=["GET"]),
            Route("/delivery", delivery_view, methods=["GET"]),
            Route("/api/v1/dora", api_dora, methods=["GET"]),
            Route("/api/v1/resources", api_resources, methods=["GET"]),
            Route("/api/v1/openapi.json", api_openapi, methods=["GET"]),
            Route("/api/v1/resources/{name:path}/{action}", api_act, methods=["POST"]),
            Route("/api/v1/resources/{name:path}", api_resource, methods=["GET"]),
            Route("/resources/{name}/events", rollout_events, methods=["GET"]),
            Route("/resources/{name}/logs", log_events, methods=["GET"]),
            Route("/resources/{name}/promote", promote, methods=["POST"]),
            Route("/resources/{name}/abort", abort, methods=["POST"]),
            Route("/resources/{name}/undo", undo, methods=["POST"]),
            Route("/resources/{name}/playground", playground, methods=["POST"]),
            Route("/resources/{name}/profile", profile, methods=["POST"]),
            Route("/static/{name}", static, methods=["GET"]),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
        ],
    )


def _act_status(exc: KaipError) -> int:
    """An action's refusal: the credential's own status, 409 when it cannot be done now, 502
    when the platform behind (a cluster) refused or failed."""
    if isinstance(exc, AccessError):
        return exc.http_status
    if isinstance(exc, PlatformError):
        return 409
    return exc.http_status if exc.http_status < 500 else 502


def _not_found(csrf: str | None) -> HTMLResponse:
    body = "<h1>Not found</h1><p>No Model or App by that name runs here.</p>"
    return HTMLResponse(page("Not found", body, csrf=csrf), status_code=404)


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


@dataclass(frozen=True)
class ActBody:
    """An action's optional JSON body."""

    to_revision: str | None = None
    who: str | None = None
    full: bool = False


ACT_FIELDS = {"to_revision", "who", "full"}


async def _act_body(request: Request) -> ActBody | Response:
    """``{}`` or any of ``to_revision`` (undo's target), ``who`` (the person acting, for the
    event log) and ``full`` (promote: skip the remaining steps)."""
    raw = await request.body()
    if not raw.strip():
        return ActBody()
    try:
        body = json.loads(raw)
    except ValueError:
        return _api_error(400, 'the body must be JSON: {} or {"to_revision": "REV"}')
    if not isinstance(body, dict) or set(body) - ACT_FIELDS:
        return _api_error(400, "the body takes to_revision, who and full only")
    revision = body.get("to_revision")
    if revision is not None and (not isinstance(revision, str) or not 0 < len(revision) <= 64):
        return _api_error(400, "to_revision: a revision of 1 to 64 characters, or null")
    who = body.get("who")
    if who is not None and (not isinstance(who, str) or not 0 < len(who) <= 200):
        return _api_error(400, "who: the person acting, 1 to 200 characters, or null")
    full = body.get("full", False)
    if not isinstance(full, bool):
        return _api_error(400, "full: true or false")
    return ActBody(revision, who, full)

"""The web UI's aiohttp application: loopback only, a login token, CSRF-checked forms.

A browser on the same machine is not the same as the owner: any local user, and any web page
the owner visits (by DNS rebinding or a cross-site form), can reach 127.0.0.1. So:
- `rms ui` prints a URL with a random token; opening it sets an HttpOnly, SameSite=Strict
  session cookie derived from the token. Without it every page is a 401 that says what to do.
- The Host header must name the loopback address and port the UI listens on (DNS rebinding).
- Every form carries a CSRF field derived from the token, and a foreign Origin is refused.
- Responses forbid framing, scripts and caching (Content-Security-Policy and friends).
Everything shown comes from the control API; a change goes through `POST /v1/contribution`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from rms.control.client import ControlClient, ControlError, DaemonUnavailable
from rms.entitlement.arithmetic import ContributionError, parse_offer
from rms.webui import render

CLIENT = web.AppKey("client", ControlClient)
SECRET = web.AppKey("secret", bytes)
HOSTS = web.AppKey("hosts", frozenset)
COOKIE = "rms_ui_session"
MAX_FORM_BYTES = 4096
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes Chromium send Origin: null
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def derive(secret: bytes, purpose: str) -> str:
    """A value derived from the token for one purpose (session cookie, CSRF field)."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).hexdigest()


def loopback_hosts(address: str, port: int) -> frozenset[str]:
    """The Host header values a browser sends for this listening address."""
    shown = f"[{address}]" if ":" in address else address
    return frozenset({f"{shown}:{port}", f"localhost:{port}"})


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host check, token login, session cookie, CSRF and origin on forms, safe headers."""
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as e:
        e.headers.update(HEADERS)
        raise
    response.headers.update(HEADERS)
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.host not in request.app[HOSTS]:
        raise web.HTTPMisdirectedRequest(text="rms ui answers only on its loopback address")
    secret = request.app[SECRET]
    token = request.query.get("token")
    if token is not None:
        if not hmac.compare_digest(token.encode(), secret):
            return _html(render.message("Wrong link", "Open the link `rms ui` printed."), 401)
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(COOKIE, derive(secret, "session"), httponly=True, samesite="Strict")
        return response
    if not hmac.compare_digest(request.cookies.get(COOKIE, ""), derive(secret, "session")):
        text = "Run `rms ui` on this computer and open the link it prints."
        return _html(render.message("Sign in with the link from rms ui", text), 401)
    if request.method == "POST":
        await _check_form(request, secret)
    return await handler(request)


async def _check_form(request: web.Request, secret: bytes) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and origin.removeprefix("http://") not in request.app[HOSTS]:
        raise web.HTTPForbidden(text="a form from another site was refused")
    form = await request.post()
    if not hmac.compare_digest(str(form.get("csrf", "")), derive(secret, "csrf")):
        raise web.HTTPForbidden(text="the form has expired: reload the page and try again")


async def home(request: web.Request) -> web.Response:
    """GET /: the page, with everything read from the control API now."""
    client = request.app[CLIENT]
    try:
        status = await client.status()
        audits = await client.get_json("/v1/audits?limit=20")
    except (DaemonUnavailable, ControlError) as e:
        return _html(render.message("The node is not answering", str(e)), 503)
    flash = "Your contribution was changed." if request.query.get("changed") == "1" else None
    return _html(render.home(status, audits, derive(request.app[SECRET], "csrf"), flash))


async def preview(request: web.Request) -> web.Response:
    """POST /contribution: show the consequence of the change; nothing applies yet."""
    form = {k: str(v) for k, v in (await request.post()).items()}
    client = request.app[CLIENT]
    csrf = derive(request.app[SECRET], "csrf")
    try:
        offer = parse_offer(form.get("storage", ""), form.get("cpu", "0"))
        result = await client.post_json("/v1/entitlement/preview", dict(offer))
    except ContributionError as e:
        status = await client.status()
        body = render.change_section(status.get("entitlement") or {}, csrf, str(e))
        return _html(render.document("Change your contribution - True Cloud", body), 400)
    except (DaemonUnavailable, ControlError) as e:
        return _html(render.message("The node is not answering", str(e)), 503)
    return _html(render.preview(result, offer, csrf))


async def apply(request: web.Request) -> web.StreamResponse:
    """POST /contribution/apply: the change, through the control API."""
    form = await request.post()
    try:
        offer = {k: int(str(form[k])) for k in ("storage_bytes", "cpu_millicores")}
        await request.app[CLIENT].post_json("/v1/contribution", dict(offer))
    except (KeyError, ValueError):
        return _html(render.message("Nothing was changed", "The form was incomplete."), 400)
    except (DaemonUnavailable, ControlError) as e:
        return _html(render.message("Nothing was changed", str(e)), 502)
    raise web.HTTPSeeOther("/?changed=1#entitlement")


async def style(request: web.Request) -> web.Response:
    """GET /style.css."""
    css = resources.files("rms.webui").joinpath("style.css").read_text()
    return web.Response(text=css, content_type="text/css", charset="utf-8")


def create_app(client: ControlClient, token: str, hosts: frozenset[str]) -> web.Application:
    """The web UI for one control socket, one login token and its loopback host names."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_FORM_BYTES)
    app[CLIENT] = client
    app[SECRET] = token.encode()
    app[HOSTS] = hosts
    app.router.add_get("/", home)
    app.router.add_post("/contribution", preview)
    app.router.add_post("/contribution/apply", apply)
    app.router.add_get("/style.css", style)
    return app

"""The control API server: an aiohttp app on a unix socket that only root and admins reach."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web

from rms.control.peer import AccessPolicy, peer_credentials, supplementary_groups
from rms.control.sections import PublishedSections
from rms.status import StatusBoard

STATUS_BOARD = web.AppKey("status_board", StatusBoard)
ACCESS_POLICY = web.AppKey("access_policy", AccessPolicy)
UPTIME: web.AppKey[Callable[[], float]] = web.AppKey("uptime")
MAX_REQUEST_BYTES = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("rms.control")


class ControlSocketError(Exception):
    """The control socket cannot be set up; the message says why and what to do."""


@web.middleware
async def require_admin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse every request from a peer that is neither root, us, nor in the admin group."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport else None
    if sock is None:
        raise web.HTTPForbidden(text="control API: cannot identify the peer")
    peer = peer_credentials(sock)
    if not request.app[ACCESS_POLICY].allows(peer, supplementary_groups(peer.pid)):
        log.info("control_denied", peer_uid=peer.uid, peer_pid=peer.pid)
        raise web.HTTPForbidden(text="control API: root or the admin group only")
    return await handler(request)


async def get_status(request: web.Request) -> web.Response:
    """GET /v1/status: the node's whole status."""
    board = request.app[STATUS_BOARD]
    return web.json_response(board.snapshot(request.app[UPTIME]()))


async def get_health(request: web.Request) -> web.Response:
    """GET /v1/health: a short answer for probes."""
    problems = request.app[STATUS_BOARD].problems()
    return web.json_response({"ok": not problems, "problems": problems})


def create_app(
    board: StatusBoard, policy: AccessPolicy, uptime: Callable[[], float]
) -> web.Application:
    """The control API application; components add their routes to it before start."""
    app = web.Application(middlewares=[require_admin], client_max_size=MAX_REQUEST_BYTES)
    app[STATUS_BOARD] = board
    app[ACCESS_POLICY] = policy
    app[UPTIME] = uptime
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/v1/health", get_health)
    app.add_routes(PublishedSections(board).routes())  # local services' sections
    return app


def prepare_socket_path(path: Path, admin_gid: int | None) -> None:
    """Create the socket's directory (0750, admin group) and clear a stale socket."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o750 if admin_gid is not None else 0o700)
    if admin_gid is not None:
        os.chown(path.parent, -1, admin_gid)
    if not path.exists() and not path.is_symlink():
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise ControlSocketError(f"{path} exists and is not a socket; remove it and start again")
    if _socket_answers(path):
        raise ControlSocketError(f"another rms is already listening on {path}")
    path.unlink()


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def restrict_socket(path: Path, admin_gid: int | None) -> None:
    """Give the listening socket mode 0660 with the admin group, or 0600 without one."""
    if admin_gid is not None:
        os.chown(path, -1, admin_gid)
    path.chmod(0o660 if admin_gid is not None else 0o600)


class ControlServer:
    """Runs the control app on its unix socket and removes the socket on close."""

    def __init__(self, app: web.Application, path: Path, admin_gid: int | None) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._path = path
        self._admin_gid = admin_gid

    async def start(self) -> None:
        """Listen; raises ControlSocketError when the socket cannot be had."""
        prepare_socket_path(self._path, self._admin_gid)
        await self._runner.setup()
        try:
            await web.UnixSite(self._runner, str(self._path)).start()
        except OSError as e:
            await self._runner.cleanup()
            raise ControlSocketError(f"cannot listen on {self._path}: {e.strerror}") from None
        restrict_socket(self._path, self._admin_gid)

    async def close(self) -> None:
        """Stop serving and remove the socket file."""
        await self._runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

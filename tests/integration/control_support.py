"""A real control socket for integration tests of control API routes: the server's app
(admin check included) with the routes under test, on a socket anyone may connect to, so
that the peer credentials alone decide who is served."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from aiohttp import web

from rms.control.peer import AccessPolicy
from rms.control.server import ControlServer, create_app
from rms.status import NodeState, StatusBoard

ADMIN_GID = 4242  # a group id no account here uses; membership is all that matters


@contextlib.asynccontextmanager
async def open_control(routes: Iterable[web.RouteDef], prefix: str) -> AsyncIterator[Path]:
    """Serve the routes on a fresh control socket (mode 0666); its path; all removed after."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    board = StatusBoard("cd" * 32, "0", os.getpid(), "now")
    board.set_state(NodeState.RUNNING)
    app = create_app(board, AccessPolicy(ADMIN_GID), lambda: 1.0)
    app.add_routes(routes)
    path = base / "run" / "control.sock"
    server = ControlServer(app, path, None)
    await server.start()
    path.parent.chmod(0o755)
    path.chmod(0o666)  # the file mode lets anyone connect: the peer credentials must decide
    try:
        yield path
    finally:
        await server.close()
        shutil.rmtree(base)

"""The fetcher against hostile HTTPS mirrors: endless, redirecting, compressed, failing."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from rms.update.client import Library, LibraryUnavailable, Reason, UpdateRefused
from rms.update.fetcher import MirrorSource
from tests.discovery_support import https_app, lab_tls
from tests.update_support import T0, Repo, make_repo

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def rogue(repo: Repo, timestamp: Handler) -> web.Application:
    """Serves the real repository, except timestamp.json."""

    async def real(request: web.Request) -> web.StreamResponse:
        path = repo.path / request.match_info["part"] / request.match_info["name"]
        if not path.is_file():
            raise web.HTTPNotFound
        return web.Response(body=path.read_bytes())

    app = web.Application()
    app.router.add_get("/library/metadata/timestamp.json", timestamp)
    app.router.add_get("/library/{part:metadata|targets}/{name:.+}", real)
    return app


async def read(tmp_path: Path, repo: Repo, app: web.Application) -> Library:
    tls = lab_tls(tmp_path / "tls")
    shipped = tmp_path / "root.json"
    shutil.copyfile(repo.trusted_root, shipped)
    async with https_app(app, tls) as url:
        library = Library(shipped, tmp_path / "cache", MirrorSource([url], ca_file=str(tls.ca)))
        await asyncio.to_thread(library.check, T0)
    return library


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "publisher")


async def test_an_endless_timestamp_is_cut_at_its_cap(repo: Repo, tmp_path: Path) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the client hangs up at its cap
            for _ in range(256):
                await response.write(b" " * 4096)
        return response

    with pytest.raises(UpdateRefused) as caught:
        await read(tmp_path, repo, rogue(repo, endless))
    assert caught.value.reason is Reason.OVERSIZED


async def test_a_redirect_is_not_followed(repo: Repo, tmp_path: Path) -> None:
    async def redirect(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://127.0.0.1:9/timestamp.json")

    with pytest.raises(LibraryUnavailable, match="HTTP 302"):
        await read(tmp_path, repo, rogue(repo, redirect))


async def test_a_compressed_answer_is_not_inflated(repo: Repo, tmp_path: Path) -> None:
    real = (repo.path / "metadata" / "timestamp.json").read_bytes()

    async def gzipped(_: web.Request) -> web.StreamResponse:
        return web.Response(body=gzip.compress(real), headers={"Content-Encoding": "gzip"})

    with pytest.raises(UpdateRefused) as caught:
        await read(tmp_path, repo, rogue(repo, gzipped))
    assert caught.value.reason is Reason.MALFORMED


async def test_a_server_error_is_unavailability_not_a_refusal(repo: Repo, tmp_path: Path) -> None:
    async def broken(_: web.Request) -> web.StreamResponse:
        raise web.HTTPServiceUnavailable

    with pytest.raises(LibraryUnavailable, match="HTTP 503"):
        await read(tmp_path, repo, rogue(repo, broken))


async def test_the_real_timestamp_through_the_same_server_verifies(
    repo: Repo, tmp_path: Path
) -> None:
    async def honest(_: web.Request) -> web.StreamResponse:
        return web.Response(body=(repo.path / "metadata" / "timestamp.json").read_bytes())

    library = await read(tmp_path, repo, rogue(repo, honest))
    assert (library.cache_dir / "metadata" / "timestamp.json").exists()

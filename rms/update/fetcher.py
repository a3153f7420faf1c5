"""Where a node reads the component library from: mirrors over HTTPS, or a local directory.

python-tuf's ngclient asks its fetcher for URLs under the two base URLs it was given. The
client gives it `library:/metadata/` and `library:/targets/`, and the fetcher here maps the
path after `library:/` onto a source:

- `MirrorSource`: the discovery mirrors' `/library/` route (vpn_discovery.server), tried in
  a random order until one answers; HTTPS verified against the configured CA; no redirects,
  no retries, no decompression, a total timeout per request.
- `DirectorySource`: a repository directory (a USB stick, a copy on cloud storage).

Nothing here is trusted: a mirror or a directory can serve anything, and ngclient refuses
what the signatures, versions, lengths and hashes do not vouch for. The fetcher only keeps a
path from escaping its source and keeps a mirror from streaming forever (ngclient stops
reading at each file's length cap).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import urllib3
from tuf.api.exceptions import DownloadError, DownloadHTTPError
from tuf.ngclient import FetcherInterface

SCHEME = "library:/"
METADATA_URL = SCHEME + "metadata/"
TARGETS_URL = SCHEME + "targets/"
CHUNK = 64 * 1024
NOT_FOUND = 404
# What ngclient asks for: N.root.json, timestamp.json, N.snapshot.json, N.targets.json and
# targets as <dir>/<sha256>.<name>; nothing with "..", a leading dot or a scheme of its own.
_PATH = re.compile(r"(metadata|targets)(/[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,240}){1,8}")


class Source(Protocol):
    """A place that serves the repository's files by relative path."""

    def open(self, path: str) -> Iterator[bytes]:
        """The file's bytes in chunks; DownloadHTTPError(404) if it is not there."""
        ...

    def describe(self) -> str:
        """Where this source reads from, for messages."""
        ...

    def close(self) -> None:
        """Drop every connection and open file (the client calls this after each action)."""
        ...

    def each(self) -> list[Source]:
        """This source split into the ones the client tries one after another."""
        ...


def relative_path(url: str) -> str:
    """The repository path of a `library:/` URL, or DownloadError."""
    if not url.startswith(SCHEME):
        raise DownloadError(f"{url!r} is not a component library URL")
    path = url.removeprefix(SCHEME)
    if not _PATH.fullmatch(path):
        raise DownloadError(f"refusing the path {path!r}")
    return path


class LibraryFetcher(FetcherInterface):
    """ngclient's fetcher over one Source."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self.source.open(relative_path(url))


class DirectorySource:
    """A repository directory on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def describe(self) -> str:
        """The directory."""
        return str(self.root)

    def close(self) -> None:
        """Nothing stays open between reads."""

    def each(self) -> list[Source]:
        """A directory is one source."""
        return [self]

    def open(self, path: str) -> Iterator[bytes]:
        """Read `path` below the directory; a symlink out of it counts as missing."""
        full = (self.root / path).resolve()
        if not full.is_relative_to(self.root) or not full.is_file():
            raise DownloadHTTPError(f"{path} is not in {self.root}", NOT_FOUND)
        return _chunks(full)


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


class MirrorSource:
    """The `/library/` route of one or more HTTPS mirrors."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        ca_file: str | None = None,
        timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if not urls:
            raise ValueError("the component library needs at least one mirror URL")
        for url in urls:
            if not url.startswith("https://"):
                raise ValueError(f"mirror URL {url!r} is not https://")
        self.urls = [_library_base(u) for u in urls]
        self.ca_file, self.timeout_s = ca_file, timeout_s
        self.rng = rng or random.Random()  # noqa: S311 - spreading load, not a secret
        self.timeout = urllib3.Timeout(total=timeout_s)
        self.pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED", ca_certs=ca_file, retries=False, timeout=self.timeout
        )
        self.live: set[urllib3.BaseHTTPResponse] = set()  # responses not read to the end

    def describe(self) -> str:
        """The mirrors."""
        return ", ".join(self.urls)

    def each(self) -> list[Source]:
        """Each mirror alone, in a random order: one bad mirror cannot block the others."""
        order = self.rng.sample(self.urls, len(self.urls))
        return [MirrorSource([u], ca_file=self.ca_file, timeout_s=self.timeout_s) for u in order]

    def close(self) -> None:
        """Close responses ngclient stopped reading, then every pooled connection."""
        for response in self.live:
            response.close()
        self.live.clear()
        self.pool.clear()

    def open(self, path: str) -> Iterator[bytes]:
        """Try the mirrors in a random order; the first that serves the file wins."""
        failures = []
        answered_404 = False
        for base in self.rng.sample(self.urls, len(self.urls)):
            try:
                return self._get(base + path)
            except DownloadHTTPError as exc:
                answered_404 = answered_404 or exc.status_code == NOT_FOUND
                failures.append(f"{base}: HTTP {exc.status_code}")
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                failures.append(f"{base}: {type(exc).__name__}")
        detail = "; ".join(failures)
        # ngclient reads 404 as "no newer root": one mirror that answered so is enough, since
        # a withheld root only keeps the node on the old one (whose keys then refuse the rest).
        if answered_404:
            raise DownloadHTTPError(f"{path} is on no mirror that answered ({detail})", NOT_FOUND)
        raise DownloadError(f"no mirror served {path}: {detail}")

    def _get(self, url: str) -> Iterator[bytes]:
        response = self.pool.request(
            "GET", url, preload_content=False, redirect=False, decode_content=False
        )
        if response.status != 200:
            response.close()  # its body is unread: the connection must not be reused
            raise DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        self.live.add(response)
        return self._stream(response)

    def _stream(self, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        yield from response.stream(CHUNK, decode_content=False)
        # Read to the end: the connection may serve the next file. A response ngclient stops
        # reading (its length cap) stays in `live` until close() drops its connection.
        self.live.discard(response)
        response.release_conn()


def _library_base(url: str) -> str:
    """`https://host:port/library/` from a mirror's base, feed or library URL."""
    base = url.split("?", 1)[0].removesuffix("/feed.rss").rstrip("/")
    if not base.endswith("/library"):
        base += "/library"
    return base + "/"

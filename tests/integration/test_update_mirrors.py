"""The component library served by real `vpn-discovery serve` mirrors over HTTPS (lab CA).

A node verifies and installs through an honest mirror, refuses a mirror whose copy of a
package was tampered with (and installs through the honest one when it knows both), falls
over from a dead mirror to a live one, and reads nothing from a mirror whose certificate it
does not trust.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import urllib3
from structlog.testing import capture_logs

from rms.lab.ca import LabCA, ServerFiles
from rms.update.client import Library, LibraryUnavailable, Reason, UpdateRefused
from rms.update.fetcher import MirrorSource
from tests.integration.test_discovery_mirrors import MirrorProcess, configure, free_port
from tests.update_support import PACKAGE, Recorder, Repo, make_repo

DEB = "rms_0.1.0_all.deb"
DEADLINE_S = 15.0


def start_mirror(base: Path, name: str, tls: ServerFiles, library: Path) -> MirrorProcess:
    port = free_port()
    config = configure(base, name, port, [], tls)
    config.write_text(config.read_text() + f'[library]\ndirectory = "{library}"\n')
    mirror = MirrorProcess(name, port, config, base / f"{name}.log", base / f"{name}.msgpack")
    mirror.start()
    return mirror


def wait_ready(mirror: MirrorProcess, ca: Path) -> None:
    pool = urllib3.PoolManager(ca_certs=str(ca), retries=False, timeout=1.0)
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert mirror.proc is not None and mirror.proc.poll() is None, mirror.log.read_text()
        try:
            if pool.request("GET", f"https://127.0.0.1:{mirror.port}/health").status == 200:
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{mirror.name} never answered\n{mirror.log.read_text()}")


class Mirrors:
    def __init__(self, base: Path, repo: Repo) -> None:
        self.base, self.repo = base, repo
        self.tls = LabCA.create().write_server(base / "tls", "m", ["discovery.test"], ["127.0.0.1"])
        self.running: list[MirrorProcess] = []

    def start(self, name: str, library: Path) -> MirrorProcess:
        mirror = start_mirror(self.base, name, self.tls, library)
        self.running.append(mirror)
        wait_ready(mirror, self.tls.ca)
        return mirror

    def node(self, name: str, *mirrors: MirrorProcess | str, ca: Path | None = None) -> Library:
        urls = [m if isinstance(m, str) else m.url for m in mirrors]  # feed URLs, as configured
        source = MirrorSource(urls, ca_file=str(ca or self.tls.ca), timeout_s=5.0)
        shipped = self.base / f"{name}-root.json"
        shutil.copyfile(self.repo.trusted_root, shipped)
        return Library(shipped, self.base / name, source)


@pytest.fixture
def mirrors(tmp_path: Path) -> Iterator[Mirrors]:
    m = Mirrors(tmp_path, make_repo(tmp_path / "publisher", datetime.now(UTC)))
    try:
        yield m
    finally:
        for mirror in m.running:
            mirror.stop()


def test_a_node_installs_through_a_mirror_and_refuses_a_tampered_copy(mirrors: Mirrors) -> None:
    honest = mirrors.start("honest", mirrors.repo.path)
    tampered_copy = mirrors.repo.copy(mirrors.base / "tampered")
    (package,) = (tampered_copy / "targets").glob(f"*.{DEB}")
    package.write_bytes(package.read_bytes().replace(b"rms 0.1.0", b"rms 6.6.6"))
    rogue = mirrors.start("rogue", tampered_copy)
    now = datetime.now(UTC)

    recorder = Recorder()
    mirrors.node("n1", honest).install(DEB, recorder, now)
    assert recorder.installed == [(DEB, PACKAGE)]

    recorder = Recorder()
    with pytest.raises(UpdateRefused) as caught:
        mirrors.node("n2", rogue).install(DEB, recorder, now)
    assert caught.value.reason is Reason.TAMPERED
    assert rogue.url.removesuffix("feed.rss") in caught.value.detail  # names the mirror
    assert recorder.installed == []

    # With the honest mirror beside it, the rogue only costs a retry, whatever the order.
    for attempt in range(4):
        recorder = Recorder()
        with capture_logs() as logs:
            mirrors.node(f"n{attempt + 3}", rogue, honest).install(DEB, recorder, now)
        assert recorder.installed == [(DEB, PACKAGE)]
        events = [(e["event"], e.get("reason")) for e in logs]
        assert events[-1] == ("update.installed", None)
        assert set(events[:-1]) <= {("update.refused", "tampered")}


def test_a_dead_mirror_is_skipped_and_an_untrusted_one_is_not_read(mirrors: Mirrors) -> None:
    honest = mirrors.start("honest", mirrors.repo.path)
    dead = f"https://127.0.0.1:{free_port()}/feed.rss"
    now = datetime.now(UTC)
    for attempt in range(3):  # whichever order the mirrors are tried in
        recorder = Recorder()
        mirrors.node(f"n{attempt}", dead, honest).install(DEB, recorder, now)
        assert recorder.installed == [(DEB, PACKAGE)]

    stranger = LabCA.create().write_server(mirrors.base / "other", "x", [], ["127.0.0.1"])
    with pytest.raises(LibraryUnavailable):
        mirrors.node("n9", honest, ca=stranger.ca).check(now)


def test_the_mirror_serves_no_staged_metadata_and_no_path_outside(mirrors: Mirrors) -> None:
    mirrors.repo.tool.add("next.deb", b"unsigned", {}, datetime.now(UTC))  # staged/ now exists
    honest = mirrors.start("honest", mirrors.repo.path)
    pool = urllib3.PoolManager(ca_certs=str(mirrors.tls.ca), retries=False, timeout=2.0)
    base = f"https://127.0.0.1:{honest.port}/library"
    assert pool.request("GET", f"{base}/metadata/1.root.json").status == 200
    for path in ("staged/targets.json", "metadata/../staged/targets.json", "metadata/%2e%2e/x"):
        assert pool.request("GET", f"{base}/{path}").status in (403, 404)

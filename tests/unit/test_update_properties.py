"""Whatever bytes a mirror serves as metadata, the client refuses them cleanly or they are the
genuine ones: it never raises anything else and never installs unsigned bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rms.update.client import Library, LibraryUnavailable, UpdateRefused
from rms.update.fetcher import DirectorySource
from tests.update_support import HOUR, PACKAGE, T0, Recorder, make_repo

DEB = "rms_0.1.0_all.deb"
ROLES = ("timestamp.json", "1.snapshot.json", "1.targets.json")
Change = tuple[str, int, bytes, int]


@st.composite
def mutation(draw: st.DrawFn) -> Change:
    role = draw(st.sampled_from(ROLES))
    return role, draw(st.integers(0, 4000)), draw(st.binary(max_size=8)), draw(st.integers(0, 8))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(change=mutation())
def test_mutated_metadata_is_refused_or_harmless(
    tmp_path: Path, change: tuple[str, int, bytes, int]
) -> None:
    base = tmp_path / "publisher"
    if not base.exists():
        make_repo(base)
    role, at, insert, delete = change
    served = tmp_path / "served"
    shutil.rmtree(served, ignore_errors=True)
    shutil.copytree(base / "repo", served)
    path = served / "metadata" / role
    data = path.read_bytes()
    at = min(at, len(data))
    path.write_bytes(data[:at] + insert + data[at + delete :])
    node = tmp_path / "node"
    shutil.rmtree(node, ignore_errors=True)
    library = Library(base / "repo" / "metadata" / "1.root.json", node, DirectorySource(served))
    recorder = Recorder()
    try:
        library.install(DEB, recorder, T0 + HOUR)
    except (UpdateRefused, LibraryUnavailable):
        assert recorder.installed == []
    else:  # only a change JSON ignores (whitespace between tokens) can pass
        assert recorder.installed == [(DEB, PACKAGE)]

"""`rms-repo check-root`: is a root.json fit to ship in a package as the nodes' trust anchor?

The .deb build (packaging/build-deb.sh) runs it on the root it ships, so a root that no node
could start from is refused at build time, not on the nodes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rms.update import repo as repo_cli
from rms.update.roles import RepoError, check_trusted_root
from tests.update_support import Repo, make_repo


@pytest.fixture
def published(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "publisher", datetime.now(UTC))


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = repo_cli.main(["check-root", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_published_root_passes_and_is_described(
    published: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = check(published.trusted_root, capsys)
    assert code == 0, text
    assert "root v1: root 2 of 3, targets 2 of 3, snapshot 1 of 1, timestamp 1 of 1" in text
    assert "expires" in text


def test_an_expired_root_passes_and_says_so(published: Repo) -> None:
    later = datetime.now(UTC) + timedelta(days=400)
    text = check_trusted_root(published.trusted_root.read_bytes(), later)
    assert "expired" in text


def test_a_root_with_one_signature_is_refused(
    published: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(published.trusted_root.read_bytes())
    doc["signatures"] = doc["signatures"][:1]
    one = tmp_path / "one.json"
    one.write_text(json.dumps(doc))
    code, text = check(one, capsys)
    assert (code, "1 of the 2 signatures" in text) == (1, True), text


def test_a_signature_repeated_to_reach_the_threshold_is_refused(
    published: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(published.trusted_root.read_bytes())
    doc["signatures"] = [doc["signatures"][0], doc["signatures"][0]]
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps(doc))
    code, text = check(twice, capsys)
    assert code == 1, text


def test_a_field_changed_after_signing_is_refused(
    published: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(published.trusted_root.read_bytes())
    doc["signed"]["expires"] = "2099-01-01T00:00:00Z"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    code, text = check(forged, capsys)
    assert (code, "0 of the 2 signatures" in text) == (1, True), text


def test_a_root_whose_offline_threshold_is_1_is_refused(published: Repo) -> None:
    doc = json.loads(published.trusted_root.read_bytes())
    doc["signed"]["roles"]["targets"]["threshold"] = 1
    with pytest.raises(RepoError, match="targets threshold 1 is below 2"):
        check_trusted_root(json.dumps(doc).encode(), datetime.now(UTC))


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xfe not utf-8", b"[]", b'{"signed": "not a root"}', b"{}", b"null"],
)
def test_malformed_files_are_refused(data: bytes, tmp_path: Path) -> None:
    with pytest.raises(RepoError, match=r"not a TUF root\.json"):
        check_trusted_root(data, datetime.now(UTC))


def test_other_metadata_is_not_a_root(published: Repo) -> None:
    targets = published.path / "metadata" / "1.targets.json"
    with pytest.raises(RepoError, match=r"not a TUF root\.json"):
        check_trusted_root(targets.read_bytes(), datetime.now(UTC))


def test_an_oversized_or_missing_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (64 * 1024 + 1))
    code, text = check(big, capsys)
    assert (code, "larger than 65536 bytes" in text) == (1, True), text
    code, text = check(tmp_path / "absent.json", capsys)
    assert (code, "cannot read root.json" in text) == (1, True), text

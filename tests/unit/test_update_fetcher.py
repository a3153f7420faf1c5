"""The fetcher keeps every path inside its source and every mirror URL on HTTPS."""

from __future__ import annotations

from pathlib import Path

import pytest
from tuf.api.exceptions import DownloadError, DownloadHTTPError

from rms.update.fetcher import (
    METADATA_URL,
    DirectorySource,
    LibraryFetcher,
    MirrorSource,
    relative_path,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/metadata/1.root.json",
        "library:/metadata/../staged/root.json",
        "library:/metadata/.hidden",
        "library:/metadata//x",
        "library:/staged/root.json",
        "library://metadata/1.root.json",
        "library:/metadata/%2e%2e/x",
        "library:/metadata/a b",
        "library:/metadata/",
        "library:/" + "targets/" + "a" * 300,
    ],
)
def test_paths_outside_the_repository_are_refused(url: str) -> None:
    with pytest.raises(DownloadError):
        relative_path(url)


def test_consistent_paths_pass() -> None:
    assert relative_path(METADATA_URL + "12.root.json") == "metadata/12.root.json"
    assert relative_path("library:/targets/policy/ab12.policy.json") == (
        "targets/policy/ab12.policy.json"
    )


def test_a_directory_source_reads_files_and_nothing_beyond(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "timestamp.json").write_bytes(b"x" * 200_000)
    (tmp_path / "secret").write_bytes(b"secret")
    (root / "metadata" / "link.json").symlink_to(tmp_path / "secret")
    fetcher = LibraryFetcher(DirectorySource(root))
    assert fetcher.download_bytes(METADATA_URL + "timestamp.json", 200_000) == b"x" * 200_000
    for name in ("link.json", "missing.json"):
        with pytest.raises(DownloadHTTPError) as caught:
            fetcher.download_bytes(METADATA_URL + name, 100)
        assert caught.value.status_code == 404
    with pytest.raises(DownloadError):
        fetcher.download_bytes(METADATA_URL + "timestamp.json", 1000)  # over the cap


def test_mirror_urls_must_be_https_and_map_to_the_library() -> None:
    with pytest.raises(ValueError, match="https"):
        MirrorSource(["http://m.example/feed.rss"])
    with pytest.raises(ValueError, match="at least one"):
        MirrorSource([])
    source = MirrorSource(
        ["https://m1.example/feed.rss?n=4", "https://m2.example", "https://m3.example/library/"]
    )
    assert source.urls == [
        "https://m1.example/library/",
        "https://m2.example/library/",
        "https://m3.example/library/",
    ]

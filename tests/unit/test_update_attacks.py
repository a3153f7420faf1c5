"""The installer refuses every attack of issue 7 and installs nothing (docs/updates.md).

A real repository made by the repository tool in a temporary directory, read by a node
through python-tuf's ngclient; the only stand-in is the recording installer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Targets

from rms.update.client import Library, Reason, UpdateRefused
from rms.update.fetcher import DirectorySource
from tests.update_support import DAY, HOUR, PACKAGE, POLICY, T0, Recorder, Repo, make_repo, node

DEB = "rms_0.1.0_all.deb"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "publisher")


def refused(library: Library, reason: Reason, now: object = T0, name: str = DEB) -> Recorder:
    recorder = Recorder()
    with pytest.raises(UpdateRefused) as caught:
        library.install(name, recorder, now)  # type: ignore[arg-type]
    assert caught.value.reason is reason, caught.value
    assert recorder.installed == []
    return recorder


def test_a_verified_package_and_the_policy_are_installed(repo: Repo, tmp_path: Path) -> None:
    library, recorder = node(tmp_path / "node", repo), Recorder()
    got = library.install(DEB, recorder, T0 + HOUR)
    library.install("policy/policy.json", recorder, T0 + HOUR)
    assert recorder.installed == [(DEB, PACKAGE), ("policy/policy.json", POLICY)]
    assert got.length == len(PACKAGE) and got.custom == {"version": "1"}
    names = [a.name for a in library.check(T0 + HOUR)]
    assert names == ["policy/policy.json", DEB]


def served_package(repo: Repo) -> Path:
    (path,) = (repo.path / "targets").glob(f"*.{DEB}")
    return path


def test_a_tampered_package_is_refused(repo: Repo, tmp_path: Path) -> None:
    package = served_package(repo)
    data = bytearray(package.read_bytes())
    data[100] ^= 0x01  # same length, one bit changed after signing
    package.write_bytes(bytes(data))
    refused(node(tmp_path / "node", repo), Reason.TAMPERED)


def test_a_package_grown_after_signing_is_refused(repo: Repo, tmp_path: Path) -> None:
    package = served_package(repo)
    package.write_bytes(package.read_bytes() + b"#!/bin/sh\nrm -rf /\n")
    refused(node(tmp_path / "node", repo), Reason.OVERSIZED)


def test_a_package_swapped_after_download_is_refused(repo: Repo, tmp_path: Path) -> None:
    library = node(tmp_path / "node", repo)

    path, info = library.fetch(DEB, T0)
    path.write_bytes(b"x" * len(PACKAGE))  # the cached copy changes before the installer runs
    library.fetch = lambda name, now: (path, info)  # type: ignore[method-assign]
    refused(library, Reason.TAMPERED)


def test_a_rollback_to_an_older_release_is_refused(repo: Repo, tmp_path: Path) -> None:
    old = repo.copy(tmp_path / "old-mirror")
    repo.release(T0 + HOUR, {DEB: PACKAGE + b"v2"}, ("targets2", "targets3"))
    library = node(tmp_path / "node", repo)
    library.install(DEB, Recorder(), T0 + 2 * HOUR)  # the node has seen release 2
    library.source = DirectorySource(old)  # a mirror now serves release 1 (still unexpired)
    refused(library, Reason.ROLLBACK, T0 + 3 * HOUR)


def test_online_keys_alone_cannot_roll_targets_back(repo: Repo, tmp_path: Path) -> None:
    first = repo.tool.dir.targets()
    assert first is not None
    repo.release(T0 + HOUR, {DEB: PACKAGE + b"v2"}, ("targets1", "targets3"))
    library = node(tmp_path / "node", repo)
    library.check(T0 + 2 * HOUR)
    # With the snapshot and timestamp keys, an attacker points a new snapshot at targets v1.
    repo.online_release(first, 1, T0 + 2 * HOUR)
    refused(library, Reason.ROLLBACK, T0 + 3 * HOUR)


def test_an_expired_timestamp_is_refused(repo: Repo, tmp_path: Path) -> None:
    refused(node(tmp_path / "node", repo), Reason.EXPIRED, T0 + DAY + HOUR)


def test_expired_targets_are_refused_even_under_a_fresh_timestamp(
    repo: Repo, tmp_path: Path
) -> None:
    later = T0 + 91 * DAY  # targets last 90 days; snapshot and timestamp are re-signed
    repo.tool.publish(repo.key("snapshot"), repo.key("ts"), later)
    refused(node(tmp_path / "node", repo), Reason.EXPIRED, later)


def test_a_frozen_repository_is_refused_once_its_timestamp_expires(
    repo: Repo, tmp_path: Path
) -> None:
    repo.tool.timestamp(repo.key("ts"), T0 + 12 * HOUR)  # timestamp v2, valid for a day
    frozen = repo.copy(tmp_path / "frozen-mirror")  # the attacker replays it from now on
    library = node(tmp_path / "node", repo)
    library.install(DEB, Recorder(), T0 + 13 * HOUR)
    repo.tool.timestamp(repo.key("ts"), T0 + 24 * HOUR)  # the real repository moves on
    library.source = DirectorySource(frozen)
    library.install(DEB, Recorder(), T0 + 30 * HOUR)  # still valid: a freeze shorter than a day
    refused(library, Reason.EXPIRED, T0 + 37 * HOUR)  # v2 expired at T0 + 36 h


def test_a_replayed_lower_timestamp_is_refused(repo: Repo, tmp_path: Path) -> None:
    older = repo.copy(tmp_path / "older")  # timestamp v1
    repo.tool.timestamp(repo.key("ts"), T0 + HOUR)  # timestamp v2
    library = node(tmp_path / "node", repo)
    library.check(T0 + 2 * HOUR)
    library.source = DirectorySource(older)
    refused(library, Reason.ROLLBACK, T0 + 3 * HOUR)


def staged_v2(repo: Repo, *signers: str) -> Metadata[Targets]:
    repo.tool.add(DEB, PACKAGE + b"evil", {}, T0 + HOUR)
    staged = repo.tool.dir.staged_targets()
    assert staged is not None
    for name in signers:
        staged.sign(repo.signer(name), append=True)
    return staged


def test_targets_with_only_one_signature_are_refused(repo: Repo, tmp_path: Path) -> None:
    repo.online_release(staged_v2(repo, "targets1"), 2, T0 + HOUR)
    refused(node(tmp_path / "node", repo), Reason.SIGNATURES, T0 + 2 * HOUR)


def test_one_signature_repeated_to_reach_the_threshold_is_refused(
    repo: Repo, tmp_path: Path
) -> None:
    targets = staged_v2(repo, "targets1")
    sig = next(iter(targets.signatures.values()))
    raw = json.loads(targets.to_bytes())
    raw["signatures"] = [sig.to_dict(), sig.to_dict()]
    repo.online_release(json.dumps(raw).encode(), 2, T0 + HOUR)
    # python-tuf refuses a document with two signatures by one key id as malformed.
    refused(node(tmp_path / "node", repo), Reason.MALFORMED, T0 + 2 * HOUR)


def test_a_countersignature_by_a_key_root_does_not_list_is_refused(
    repo: Repo, tmp_path: Path
) -> None:
    targets = staged_v2(repo, "targets1", "snapshot")  # an online key is no targets key
    repo.online_release(targets, 2, T0 + HOUR)
    refused(node(tmp_path / "node", repo), Reason.SIGNATURES, T0 + 2 * HOUR)


def test_a_forged_signature_is_refused(repo: Repo, tmp_path: Path) -> None:
    targets = staged_v2(repo, "targets1", "targets2")
    raw = json.loads(targets.to_bytes())
    sig = raw["signatures"][1]["sig"]
    raw["signatures"][1]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    repo.online_release(json.dumps(raw).encode(), 2, T0 + HOUR)
    refused(node(tmp_path / "node", repo), Reason.SIGNATURES, T0 + 2 * HOUR)


def test_a_field_changed_after_signing_is_refused(repo: Repo, tmp_path: Path) -> None:
    targets = staged_v2(repo, "targets1", "targets2")
    targets.signed.targets[DEB].length += 1  # signatures no longer cover the body
    repo.online_release(targets, 2, T0 + HOUR)
    refused(node(tmp_path / "node", repo), Reason.SIGNATURES, T0 + 2 * HOUR)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"signed": {}, "signatures": []}', b"\xff\xfe", b""],
    ids=["not-json", "array", "empty-signed", "not-utf8", "empty"],
)
def test_malformed_timestamp_metadata_is_refused(repo: Repo, tmp_path: Path, body: bytes) -> None:
    (repo.path / "metadata" / "timestamp.json").write_bytes(body)
    refused(node(tmp_path / "node", repo), Reason.MALFORMED)


def test_oversized_metadata_is_refused_before_it_is_parsed(repo: Repo, tmp_path: Path) -> None:
    stamp = repo.path / "metadata" / "timestamp.json"
    stamp.write_bytes(stamp.read_bytes()[:-1] + b" " * 8192 + b"}")
    refused(node(tmp_path / "node", repo), Reason.OVERSIZED)


def test_a_target_nobody_signed_is_refused(repo: Repo, tmp_path: Path) -> None:
    (repo.path / "targets" / "evil.deb").write_bytes(b"evil")
    refused(node(tmp_path / "node", repo), Reason.UNKNOWN_TARGET, name="evil.deb")

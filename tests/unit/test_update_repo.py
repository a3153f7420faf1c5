"""The repository side: roles, thresholds, key files, key rotation that nodes follow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, Key

from rms.update import roles
from rms.update.client import Reason, UpdateRefused
from rms.update.roles import Expiry, RepoError, RoleKeys
from rms.update.store import generate_key, load_public_key, load_signer, public_path
from tests.update_support import DAY, HOUR, PACKAGE, T0, Recorder, Repo, make_repo, node

DEB = "rms_0.1.0_all.deb"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "publisher")


def keys(n: int) -> tuple[Key, ...]:
    return tuple(CryptoSigner.generate_ed25519().public_key for _ in range(n))


def test_offline_roles_need_a_threshold_of_two_and_distinct_keys() -> None:
    good = {"root": RoleKeys(keys(3), 2), "targets": RoleKeys(keys(2), 2)}
    good |= {"snapshot": RoleKeys(keys(1), 1), "timestamp": RoleKeys(keys(1), 1)}
    root = roles.new_root(good, T0, Expiry())
    assert root.signed.consistent_snapshot and root.signed.roles["root"].threshold == 2
    assert root.signed.expires == T0 + Expiry().root
    with pytest.raises(RepoError, match="at least 2"):
        roles.new_root(good | {"targets": RoleKeys(keys(2), 1)}, T0, Expiry())
    with pytest.raises(RepoError, match="threshold 4"):
        roles.new_root(good | {"root": RoleKeys(keys(3), 4)}, T0, Expiry())
    twice = keys(1) * 2
    with pytest.raises(RepoError, match="twice"):
        roles.new_root(good | {"root": RoleKeys(twice, 2)}, T0, Expiry())
    with pytest.raises(RepoError, match="exactly"):
        roles.new_root({"root": RoleKeys(keys(3), 2)}, T0, Expiry())


@pytest.mark.parametrize(
    "name",
    ["", "../etc/passwd", "/abs.deb", "a//b", ".hidden", "a/./b", "sp ace.deb", "x" * 201,
     "new\nline", "é.deb", "a/.."],
)  # fmt: skip
def test_unsafe_target_names_are_refused(name: str) -> None:
    with pytest.raises(RepoError, match="target name"):
        roles.check_target_name(name)


def test_publishing_refuses_a_targets_file_without_its_countersignature(repo: Repo) -> None:
    repo.tool.add(DEB, PACKAGE + b"2", {}, T0 + HOUR)
    assert repo.tool.sign("targets", repo.key("targets3")) == "targets v2: 1 of 2"
    before = sorted(p.name for p in (repo.path / "metadata").iterdir())
    with pytest.raises(RepoError, match="1 of the 2 signatures"):
        repo.tool.publish(repo.key("snapshot"), repo.key("ts"), T0 + HOUR)
    assert sorted(p.name for p in (repo.path / "metadata").iterdir()) == before
    with pytest.raises(RepoError, match="not one of the targets keys"):
        repo.tool.sign("targets", repo.key("root1"))
    repo.tool.sign("targets", repo.key("targets1"))
    with pytest.raises(RepoError, match="not one of the snapshot keys"):
        repo.tool.publish(repo.key("ts"), repo.key("ts"), T0 + HOUR)
    with pytest.raises(RepoError, match="not one of the timestamp keys"):
        repo.tool.publish(repo.key("snapshot"), repo.key("snapshot"), T0 + HOUR)
    assert sorted(p.name for p in (repo.path / "metadata").iterdir()) == before


def test_a_change_after_signing_clears_the_signatures(repo: Repo) -> None:
    repo.tool.add(DEB, PACKAGE + b"2", {}, T0 + HOUR)
    repo.tool.sign("targets", repo.key("targets1"))
    repo.tool.remove("policy/policy.json", T0 + HOUR)
    staged = repo.tool.dir.staged_targets()
    assert staged is not None and staged.signatures == {}
    with pytest.raises(RepoError, match="no target named"):
        repo.tool.remove("policy/policy.json", T0 + HOUR)


def test_init_refuses_an_existing_repository(repo: Repo) -> None:
    with pytest.raises(RepoError, match="already holds"):
        repo.tool.init({}, T0)


def test_key_files(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "k")
    assert load_signer(tmp_path / "k").public_key.keyid == key.keyid
    assert load_public_key(public_path(tmp_path / "k")).keyid == key.keyid
    (tmp_path / "junk").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n")
    (tmp_path / "huge").write_bytes(b"A" * 20000)
    for path in ("junk", "huge", "missing"):
        with pytest.raises(RepoError):
            load_signer(tmp_path / path)
        with pytest.raises(RepoError):
            load_public_key(tmp_path / path)
    with pytest.raises(RepoError, match="not an unencrypted PEM private key"):
        load_signer(public_path(tmp_path / "k"))


def test_a_staged_file_that_is_not_metadata_is_refused(repo: Repo) -> None:
    repo.tool.dir.staged_dir.mkdir(exist_ok=True)
    (repo.tool.dir.staged_dir / "targets.json").write_text("{}")
    with pytest.raises(RepoError, match="not TUF metadata"):
        repo.tool.add(DEB, b"x", {}, T0)
    (repo.tool.dir.staged_dir / "targets.json").write_bytes(b" " * (4 * 1024 * 1024 + 1))
    with pytest.raises(RepoError, match="larger than"):
        repo.tool.add(DEB, b"x", {}, T0)
    root = json.loads(repo.trusted_root.read_bytes())
    (repo.tool.dir.staged_dir / "targets.json").write_text(json.dumps(root))
    with pytest.raises(RepoError, match="holds root metadata"):
        repo.tool.add(DEB, b"x", {}, T0)


def test_nodes_follow_a_timestamp_key_rotation(repo: Repo, tmp_path: Path) -> None:
    library = node(tmp_path / "node", repo)
    library.check(T0 + HOUR)
    generate_key(repo.key("ts2"))
    old_ts = repo.signer("ts").public_key.keyid
    new = load_public_key(public_path(repo.key("ts2")))
    assert repo.tool.rotate("timestamp", (new,), (old_ts,), None, T0 + HOUR) == 2
    assert repo.tool.sign("root", repo.key("root2")) == "root v2: new keys 1 of 2, old keys 1 of 2"
    with pytest.raises(RepoError, match="old root keys"):
        repo.tool.publish(repo.key("snapshot"), repo.key("ts2"), T0 + HOUR)
    repo.tool.sign("root", repo.key("root3"))
    with pytest.raises(RepoError, match="not one of the timestamp keys"):
        repo.tool.publish(repo.key("snapshot"), repo.key("ts"), T0 + HOUR)
    repo.tool.publish(repo.key("snapshot"), repo.key("ts2"), T0 + HOUR)
    recorder = Recorder()
    library.install(DEB, recorder, T0 + 2 * HOUR)
    assert recorder.installed == [(DEB, PACKAGE)]
    # The retired key can no longer speak for the repository.
    snapshot = repo.tool.dir.snapshot()
    assert snapshot is not None
    repo.stamp(snapshot, T0 + 3 * HOUR)
    with pytest.raises(UpdateRefused) as caught:
        library.check(T0 + 4 * HOUR)
    assert caught.value.reason is Reason.SIGNATURES


def test_a_root_rotation_needs_both_the_old_and_the_new_root_keys(
    repo: Repo, tmp_path: Path
) -> None:
    generate_key(repo.key("root4"))
    root4 = load_public_key(public_path(repo.key("root4")))
    root1 = repo.signer("root1").public_key.keyid
    repo.tool.rotate("root", (root4,), (root1,), None, T0 + HOUR)
    repo.tool.sign("root", repo.key("root4"))
    repo.tool.sign("root", repo.key("root3"))  # new keys 2 of 2, old keys 1 of 2
    with pytest.raises(RepoError, match="old root keys"):
        repo.tool.publish(repo.key("snapshot"), repo.key("ts"), T0 + HOUR)
    # An attacker who holds only the new keys publishes the root anyway: nodes refuse it.
    staged = repo.tool.dir.staged_root()
    assert staged is not None
    (repo.path / "metadata" / "2.root.json").write_bytes(staged.to_bytes())
    with pytest.raises(UpdateRefused) as caught:
        node(tmp_path / "node", repo).check(T0 + 2 * HOUR)
    assert caught.value.reason is Reason.SIGNATURES
    (repo.path / "metadata" / "2.root.json").unlink()
    repo.tool.sign("root", repo.key("root1"))  # the retiring key holder countersigns
    repo.tool.publish(repo.key("snapshot"), repo.key("ts"), T0 + HOUR)
    assert [a.name for a in node(tmp_path / "node2", repo).check(T0 + 2 * HOUR)][-1] == DEB
    repo.tool.rotate("targets", (), (), 3, T0 + HOUR)
    with pytest.raises(RepoError, match="holds no root key"):
        repo.tool.sign("root", repo.key("targets1"))


def test_snapshot_and_timestamp_never_go_back(repo: Repo) -> None:
    targets = repo.tool.dir.targets()
    snapshot = repo.tool.dir.snapshot()
    assert targets is not None and snapshot is not None
    older = roles.next_version(targets, T0, Expiry())
    older.signed.version = 1
    snapshot.signed.meta["targets.json"].version = 5
    with pytest.raises(RepoError, match="older than 5"):
        roles.snapshot_of(snapshot, older, T0 + DAY, Expiry())


def test_renewing_targets_keeps_nodes_working_past_the_old_expiry(
    repo: Repo, tmp_path: Path
) -> None:
    later = T0 + 80 * DAY
    assert repo.tool.renew("targets", later) == 2
    with pytest.raises(RepoError, match="already staged"):
        repo.tool.renew("targets", later)
    with pytest.raises(RepoError, match="renew root or targets"):
        repo.tool.renew("snapshot", later)
    for name in ("targets2", "targets3"):
        repo.tool.sign("targets", repo.key(name))
    repo.tool.publish(repo.key("snapshot"), repo.key("ts"), later)
    repo.tool.publish(repo.key("snapshot"), repo.key("ts"), T0 + 95 * DAY)  # the daily run
    recorder = Recorder()
    node(tmp_path / "node", repo).install(DEB, recorder, T0 + 95 * DAY + HOUR)  # v1 ended at 90
    assert recorder.installed == [(DEB, PACKAGE)]
    assert repo.tool.renew("root", later) == 2

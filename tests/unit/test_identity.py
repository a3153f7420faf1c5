"""Node identity: key file creation, the checks that stop the daemon, derived keys."""

from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from nacl.public import Box

from rms.identity import (
    KEY_FILE_MAGIC,
    KEY_FILE_NAME,
    KEY_FILE_SIZE,
    IdentityError,
    NodeIdentity,
    format_key_file,
    load,
    load_or_create,
    node_id_of,
    peer_box_public_key,
)

SEED = bytes(range(32))


def write_key(path: Path, content: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), stat.S_IMODE(path.lstat().st_mode)


def assert_refused(path: Path, *words: str) -> IdentityError:
    before = snapshot(path)
    with pytest.raises(IdentityError) as caught:
        load_or_create(path.parent)
    message = str(caught.value)
    assert str(path) in message
    assert "left untouched" in message
    for word in words:
        assert word in message
    assert snapshot(path) == before
    return caught.value


def test_first_start_creates_a_0600_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ident = load_or_create(state)
    key = state / KEY_FILE_NAME
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.stat().st_size == KEY_FILE_SIZE
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert [p.name for p in state.iterdir()] == [KEY_FILE_NAME]  # no temp file left
    assert load(key) == ident


def test_reload_gives_the_same_identity(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    content = (tmp_path / KEY_FILE_NAME).read_bytes()
    second = load_or_create(tmp_path)
    assert second == first
    assert second.public_key == first.public_key
    assert second.node_id == first.node_id
    assert (tmp_path / KEY_FILE_NAME).read_bytes() == content


def test_key_file_format(tmp_path: Path) -> None:
    content = format_key_file(SEED)
    checksum = hashlib.sha256(KEY_FILE_MAGIC + SEED).digest()[:4]
    assert content == b"TCK\x01" + SEED + checksum
    write_key(tmp_path / KEY_FILE_NAME, content)
    assert load_or_create(tmp_path) == NodeIdentity.from_seed(SEED)


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    key = tmp_path / KEY_FILE_NAME
    write_key(key, format_key_file(SEED))
    before = snapshot(key)
    for _ in range(3):
        assert load_or_create(tmp_path) == NodeIdentity.from_seed(SEED)
    assert snapshot(key) == before


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666, 0o610])
def test_loose_permissions_stop_the_daemon(tmp_path: Path, mode: int) -> None:
    key = tmp_path / KEY_FILE_NAME
    write_key(key, format_key_file(SEED), mode)
    assert_refused(key, f"{mode:04o}", "chmod 600")


@pytest.mark.parametrize("size", [0, 1, KEY_FILE_SIZE - 1, KEY_FILE_SIZE + 1, 4096])
def test_wrong_size_stops_the_daemon(tmp_path: Path, size: int) -> None:
    key = tmp_path / KEY_FILE_NAME
    write_key(key, (format_key_file(SEED) * 200)[:size])
    assert_refused(key, f"{size} bytes", f"expected {KEY_FILE_SIZE}", "backup")


@pytest.mark.parametrize("offset", [4, 20, 35, 36, 39])
def test_corrupt_checksum_stops_the_daemon(tmp_path: Path, offset: int) -> None:
    content = bytearray(format_key_file(SEED))
    content[offset] ^= 0x10
    key = tmp_path / KEY_FILE_NAME
    write_key(key, bytes(content))
    assert_refused(key, "corrupt", "checksum", "backup")


def test_foreign_file_stops_the_daemon(tmp_path: Path) -> None:
    key = tmp_path / KEY_FILE_NAME
    write_key(key, b"-----BEGIN OPENSSH PRIVATE KEY---\n"[:KEY_FILE_SIZE].ljust(KEY_FILE_SIZE))
    assert_refused(key, "header")


def test_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.key"
    write_key(target, format_key_file(SEED))
    key = tmp_path / KEY_FILE_NAME
    key.symlink_to(target)
    assert_refused(key, "symbolic link")
    assert key.is_symlink()


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    key = tmp_path / KEY_FILE_NAME
    os.mkfifo(key, 0o600)
    with pytest.raises(IdentityError, match="not a regular file"):
        load_or_create(tmp_path)
    assert stat.S_ISFIFO(key.lstat().st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_key_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    key = tmp_path / KEY_FILE_NAME
    write_key(key, format_key_file(SEED))
    os.chown(key, 12345, 12345)
    assert_refused(key, "uid 12345", "chown")


def test_load_of_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="no node key"):
        load(tmp_path / KEY_FILE_NAME)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(IdentityError, match="cannot create the state directory"):
        load_or_create(blocker / "state")


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with ThreadPoolExecutor(max_workers=8) as pool:
        identities = list(pool.map(lambda _: load_or_create(state), range(16)))
    assert len({i.node_id for i in identities}) == 1
    assert [p.name for p in state.iterdir()] == [KEY_FILE_NAME]


def test_a_key_created_meanwhile_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / KEY_FILE_NAME
    real_link = os.link

    def racing_link(src: str | Path, dst: str | Path) -> None:
        write_key(key, format_key_file(SEED))  # another process got there first
        real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    assert load_or_create(tmp_path) == NodeIdentity.from_seed(SEED)
    assert key.read_bytes() == format_key_file(SEED)
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]


def test_node_id_is_sha256_of_the_public_key() -> None:
    ident = NodeIdentity.from_seed(SEED)
    assert ident.public_key == bytes(ident.verify_key)
    assert len(ident.public_key) == 32
    assert ident.node_id == hashlib.sha256(ident.public_key).digest()
    assert ident.node_id == node_id_of(ident.public_key)
    assert ident.node_id_hex == ident.node_id.hex()


def test_sign_matches_pynacl() -> None:
    ident = NodeIdentity.from_seed(SEED)
    message = b"resource request"
    assert ident.sign(message) == ident.signing_key.sign(message).signature
    ident.verify_key.verify(message, ident.sign(message))


def test_box_between_two_identities() -> None:
    alice = NodeIdentity.from_seed(b"a" * 32)
    bob = NodeIdentity.from_seed(b"b" * 32)
    sealed = Box(alice.box_private_key(), peer_box_public_key(bob.public_key)).encrypt(b"hi")
    assert Box(bob.box_private_key(), alice.box_public_key()).decrypt(sealed) == b"hi"
    assert peer_box_public_key(alice.public_key) == alice.box_public_key()


def test_repr_and_str_hold_no_secret() -> None:
    ident = NodeIdentity.from_seed(SEED)
    secret_forms = [SEED.hex(), repr(SEED), SEED.hex().upper(), repr(SEED[:8])[2:-1]]
    for text in (repr(ident), str(ident), f"{ident}", f"{ident!r}", repr([ident])):
        assert ident.node_id_hex in text
        for form in secret_forms:
            assert form not in text


def test_bad_seed_length_is_a_local_error() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        NodeIdentity.from_seed(b"short")


def test_identities_compare_by_public_key() -> None:
    assert NodeIdentity.from_seed(SEED) == NodeIdentity.from_seed(SEED)
    assert NodeIdentity.from_seed(SEED) != NodeIdentity.generate()
    assert len({NodeIdentity.from_seed(SEED), NodeIdentity.from_seed(SEED)}) == 1

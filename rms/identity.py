"""Node identity: the ed25519 key pair that is a node, kept in a self-checking key file.

A node is its ed25519 key (DESIGN.md, "Identity and the wire"); `node_id = SHA-256(public
key)`. The key file is created once, atomically, mode 0600, and never overwritten: a key
that looks wrong stops the daemon with an `IdentityError` instead of being replaced, because
replacing it would silently turn the node into a stranger to every VPN it belongs to.

Key file format (40 bytes, docs/wire.md): magic ``b"TCK\\x01"`` (4), ed25519 seed (32),
``SHA-256(magic + seed)[:4]`` (4).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nacl import bindings
from nacl.public import PrivateKey, PublicKey
from nacl.signing import SigningKey, VerifyKey

from rms.atomicfile import fsync_dir

__all__ = [
    "KEY_FILE_MAGIC",
    "KEY_FILE_NAME",
    "KEY_FILE_SIZE",
    "IdentityError",
    "NodeIdentity",
    "format_key_file",
    "load",
    "load_or_create",
    "node_id_of",
    "peer_box_public_key",
    "random_seed",
]

KEY_FILE_NAME = "node.key"
KEY_FILE_MAGIC = b"TCK\x01"  # "True Cloud Key", format 1
SEED_SIZE = 32
CHECKSUM_SIZE = 4
KEY_FILE_SIZE = len(KEY_FILE_MAGIC) + SEED_SIZE + CHECKSUM_SIZE
KEY_FILE_MODE = 0o600
SIGNATURE_SIZE = 64


class IdentityError(Exception):
    """The node key cannot be used; the message says what is wrong, what was kept, what next."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return self.message


def node_id_of(public_key: bytes) -> bytes:
    """The 32-byte node id of an ed25519 public key: SHA-256 of the key."""
    return hashlib.sha256(public_key).digest()


def peer_box_public_key(public_key: bytes) -> PublicKey:
    """The X25519 key to box messages to the node owning this ed25519 public key."""
    return PublicKey(bindings.crypto_sign_ed25519_pk_to_curve25519(public_key))


@dataclass(frozen=True, eq=False, repr=False, slots=True)
class NodeIdentity:
    """A node's key pair; the private half never appears in repr, str or logs."""

    signing_key: SigningKey
    public_key: bytes = field(init=False)
    node_id: bytes = field(init=False)
    # libsodium's 64-byte secret key (seed + public key), kept to sign without re-deriving.
    _secret: bytes = field(init=False)

    def __post_init__(self) -> None:
        public, secret = bindings.crypto_sign_seed_keypair(bytes(self.signing_key))
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "node_id", node_id_of(public))
        object.__setattr__(self, "_secret", secret)

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeIdentity:
        """The identity whose ed25519 seed is `seed` (32 bytes); tests pass seeded bytes."""
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
        return cls(SigningKey(seed))

    @classmethod
    def generate(cls) -> NodeIdentity:
        """A fresh identity from the OS random source (not persisted)."""
        return cls.from_seed(os.urandom(SEED_SIZE))

    @property
    def verify_key(self) -> VerifyKey:
        """The PyNaCl verify key (public half)."""
        return self.signing_key.verify_key

    @property
    def node_id_hex(self) -> str:
        """The node id in hex, for display and logs."""
        return self.node_id.hex()

    def sign(self, message: bytes) -> bytes:
        """The detached 64-byte ed25519 signature of `message`."""
        signed: bytes = bindings.crypto_sign(message, self._secret)
        return signed[:SIGNATURE_SIZE]

    def box_private_key(self) -> PrivateKey:
        """The X25519 private key derived from the ed25519 key, for NaCl boxes."""
        return self.signing_key.to_curve25519_private_key()

    def box_public_key(self) -> PublicKey:
        """The X25519 public key derived from the ed25519 key, for NaCl boxes."""
        return self.verify_key.to_curve25519_public_key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeIdentity):
            return NotImplemented
        return self.public_key == other.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"NodeIdentity(node_id={self.node_id_hex})"

    __str__ = __repr__


def format_key_file(seed: bytes) -> bytes:
    """The 40-byte key file content for an ed25519 seed."""
    return KEY_FILE_MAGIC + seed + _checksum(seed)


def _checksum(seed: bytes) -> bytes:
    return hashlib.sha256(KEY_FILE_MAGIC + seed).digest()[:CHECKSUM_SIZE]


def random_seed() -> bytes:
    """A fresh ed25519 seed from the OS random source."""
    return os.urandom(SEED_SIZE)


def load_or_create(state_dir: Path, make_seed: Callable[[], bytes] = random_seed) -> NodeIdentity:
    """The node identity kept in `state_dir`, created (mode 0600) on first start.

    `make_seed` makes the seed of a new key; the daemon passes one that solves the DHT's
    key puzzle (rms.dht.puzzle), which this library module cannot import. An existing key is
    loaded as it is, whatever its seed.
    """
    path = state_dir / KEY_FILE_NAME
    if not os.path.lexists(path):
        _make_state_dir(state_dir)
        _create(path, make_seed())
    return load(path)


def load(path: Path) -> NodeIdentity:
    """The identity in key file `path`; raises IdentityError and leaves the file untouched."""
    seed = _parse(path, _read(path))
    return NodeIdentity.from_seed(seed)


def _kept(path: Path) -> str:
    return f"the file {path} was left untouched"


def _read(path: Path) -> bytes:
    # O_NOFOLLOW: a symlink planted in the state directory must not redirect us;
    # O_NONBLOCK: a FIFO in place of the key must not hang the daemon.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _open_error(path, exc) from None
    try:
        _check_stat(path, os.fstat(fd))
        return os.read(fd, KEY_FILE_SIZE + 1)
    except OSError as exc:
        raise IdentityError(
            f"cannot read node key {path}: {exc.strerror}; {_kept(path)}; "
            "check the disk and the file's owner, then start again",
            path,
        ) from None
    finally:
        os.close(fd)


def _open_error(path: Path, exc: OSError) -> IdentityError:
    if exc.errno == errno.ELOOP:
        problem = "is a symbolic link; the node key must be a regular file"
        advice = "replace the link with the key file itself, then start again"
    elif exc.errno == errno.ENOENT:
        return IdentityError(
            f"no node key at {path}; nothing was created; "
            "start the daemon with this state directory to create one",
            path,
        )
    else:
        problem = f"cannot be opened: {exc.strerror}"
        advice = "check the file's owner and the state directory's permissions, then start again"
    return IdentityError(f"node key {path} {problem}; {_kept(path)}; {advice}", path)


def _check_stat(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise IdentityError(
            f"node key {path} is not a regular file; {_kept(path)}; "
            "move it away and start again to create a new identity",
            path,
        )
    if st.st_uid != os.geteuid():
        raise IdentityError(
            f"node key {path} belongs to uid {st.st_uid}, not to this daemon (uid "
            f"{os.geteuid()}); {_kept(path)}; run the daemon as the key's owner or "
            f"`chown {os.geteuid()} {path}`",
            path,
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise IdentityError(
            f"node key {path} has mode {mode:04o}: group or others may read it; "
            f"{_kept(path)}; if only you could have read it, run `chmod 600 {path}` and "
            "start again; otherwise treat the key as leaked and move it away to create a "
            "new identity",
            path,
        )
    _check_size(path, st.st_size)


def _check_size(path: Path, size: int) -> None:
    if size != KEY_FILE_SIZE:
        raise IdentityError(
            f"node key {path} is {size} bytes, expected {KEY_FILE_SIZE}: it is damaged or "
            f"not a node key; {_kept(path)}; restore it from a backup, or move it away to "
            "start as a new node with a new node id",
            path,
        )


def _parse(path: Path, data: bytes) -> bytes:
    _check_size(path, len(data))
    magic = data[: len(KEY_FILE_MAGIC)]
    seed = data[len(KEY_FILE_MAGIC) : len(KEY_FILE_MAGIC) + SEED_SIZE]
    checksum = data[len(KEY_FILE_MAGIC) + SEED_SIZE :]
    if magic != KEY_FILE_MAGIC:
        raise IdentityError(
            f"node key {path} does not start with the node key header {KEY_FILE_MAGIC!r}: "
            f"it is damaged or not a node key; {_kept(path)}; restore it from a backup, or "
            "move it away to start as a new node with a new node id",
            path,
        )
    if not secrets.compare_digest(checksum, _checksum(seed)):
        raise IdentityError(
            f"node key {path} is corrupt (checksum mismatch); {_kept(path)}; restore it "
            "from a backup, or move it away to start as a new node with a new node id",
            path,
        )
    return seed


def _make_state_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise IdentityError(
            f"cannot create the state directory {state_dir}: {exc.strerror}; nothing was "
            "written; create it (mode 0700, owned by the daemon's user) and start again",
            state_dir,
        ) from None


def _create(path: Path, seed: bytes) -> None:
    """Write a new key file; an existing key (e.g. from a concurrent start) always wins."""
    if len(seed) != SEED_SIZE:
        raise ValueError(f"an ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        _write_new(temp, format_key_file(seed))
        # If another process created the key first, its key wins and load() reads it.
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise IdentityError(
            f"cannot create node key {path}: {exc.strerror}; no key was written; check "
            "that the state directory is writable, supports hard links and has free "
            "space, then start again",
            path,
        ) from None
    finally:
        temp.unlink(missing_ok=True)


def _write_new(temp: Path, content: bytes) -> None:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)  # the umask could have removed bits, never added any
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)

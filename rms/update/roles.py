"""The component library's TUF metadata, made and checked in memory (sans-IO; docs/updates.md).

Four top-level roles (The Update Framework specification, section 2.1):

| role      | keys                        | threshold | expiry  | signs                        |
|-----------|-----------------------------|-----------|---------|------------------------------|
| root      | offline, one per key holder | 2 of 3    | 1 year  | every role's keys            |
| targets   | offline, release signers    | 2         | 90 days | the packages and the policy  |
| snapshot  | online, the repository host | 1         | 7 days  | the version of targets.json  |
| timestamp | online, the repository host | 1         | 1 day   | the version of snapshot.json |

Every function takes `now` (a timezone-aware datetime) instead of reading a clock, and signs
nothing it was not given a signer for. Files are the repository tool's business
(rms.update.store); verification on the nodes is python-tuf's ngclient (rms.update.client).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    TOP_LEVEL_ROLE_NAMES,
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
    VerificationResult,
)
from tuf.api.serialization import DeserializationError

OFFLINE_ROLES = ("root", "targets")
ONLINE_ROLES = ("snapshot", "timestamp")
MIN_OFFLINE_THRESHOLD = 2  # issue 7: signed and countersigned
MAX_TARGET_NAME = 200
MAX_ROOT_BYTES = 64 * 1024  # a root with a dozen keys is ~5 KiB
M = TypeVar("M", Root, Timestamp, Snapshot, Targets)
# A target name is a path of plain segments; no "..", no absolute path, nothing a shell,
# a URL or a file system would read differently.
_SEGMENT = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,99}")


class RepoError(Exception):
    """A repository operation was refused; the message says why and what to do."""


@dataclass(frozen=True)
class Expiry:
    """How long each role's metadata stays valid after it is signed."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def of(self, role: str) -> timedelta:
        """The lifetime of `role`."""
        lifetime: timedelta = getattr(self, role)
        return lifetime


@dataclass(frozen=True)
class RoleKeys:
    """The public keys of one role and how many of them must sign."""

    keys: tuple[Key, ...]
    threshold: int


def new_root(roles: dict[str, RoleKeys], now: datetime, expiry: Expiry) -> Metadata[Root]:
    """Version 1 of root.json, unsigned, with consistent snapshots."""
    if set(roles) != set(TOP_LEVEL_ROLE_NAMES):
        raise RepoError(f"root needs keys for exactly {sorted(TOP_LEVEL_ROLE_NAMES)}")
    root = Root(expires=now + expiry.root, consistent_snapshot=True)
    for name, spec in roles.items():
        _check_role_keys(name, spec)
        root.roles[name] = Role([], spec.threshold)
        for key in spec.keys:
            root.add_key(key, name)
    return Metadata(root)


def _check_role_keys(name: str, spec: RoleKeys) -> None:
    ids = {key.keyid for key in spec.keys}
    if len(ids) != len(spec.keys):
        raise RepoError(f"{name}: the same key is listed twice")
    if not 1 <= spec.threshold <= len(ids):
        raise RepoError(f"{name}: threshold {spec.threshold} needs 1..{len(ids)} keys")
    if name in OFFLINE_ROLES and spec.threshold < MIN_OFFLINE_THRESHOLD:
        raise RepoError(f"{name}: an offline role needs a threshold of at least 2")


def new_targets(now: datetime, expiry: Expiry) -> Metadata[Targets]:
    """Version 1 of targets.json, empty and unsigned."""
    return Metadata(Targets(expires=now + expiry.targets))


def next_version(current: Metadata[M], now: datetime, expiry: Expiry) -> Metadata[M]:
    """A copy of `current` to edit and sign: version + 1, fresh expiry, no signatures."""
    staged: Metadata[M] = Metadata.from_bytes(current.to_bytes())  # a deep copy
    staged.signed.version += 1
    staged.signed.expires = now + expiry.of(staged.signed.type)
    staged.signatures.clear()
    return staged


def check_target_name(name: str) -> str:
    """`name` if it is a safe target path, else RepoError."""
    parts = name.split("/")
    if len(name) > MAX_TARGET_NAME or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise RepoError(
            f"target name {name!r}: use 1-{MAX_TARGET_NAME} characters of A-Z a-z 0-9 . _ + - "
            "in segments separated by /, none starting with a dot"
        )
    return name


def add_target(staged: Metadata[Targets], name: str, data: bytes, custom: dict[str, str]) -> None:
    """List `data` as target `name` (replacing an older entry); clears signatures."""
    target = TargetFile.from_data(check_target_name(name), data, ["sha256", "sha512"])
    if custom:
        target.unrecognized_fields["custom"] = dict(custom)
    staged.signed.targets[name] = target
    staged.signatures.clear()


def remove_target(staged: Metadata[Targets], name: str) -> None:
    """Stop listing target `name`; clears signatures."""
    if staged.signed.targets.pop(name, None) is None:
        raise RepoError(f"no target named {name!r}")
    staged.signatures.clear()


def verification(root: Root, role: str, md: Metadata[M]) -> VerificationResult:
    """Which of `role`'s keys have validly signed `md`, and whether that meets its threshold."""
    return root.get_verification_result(role, md.signed_bytes, md.signatures)


def sign(md: Metadata[M], signer: Signer, root: Root) -> VerificationResult:
    """Add `signer`'s signature to `md`, a role `root` delegates to; returns the progress."""
    role = md.signed.type
    keyid = signer.public_key.keyid
    if keyid not in root.roles[role].keyids:
        raise RepoError(f"key {keyid[:16]} is not one of the {role} keys listed in root.json")
    try:
        md.sign(signer, append=True)
    except UnsignedMetadataError as exc:
        raise RepoError(f"signing {role} failed: {exc}") from None
    return verification(root, role, md)


def require_threshold(root: Root, md: Metadata[M], what: str) -> None:
    """RepoError unless `md` carries the threshold of valid signatures `root` demands."""
    result = verification(root, md.signed.type, md)
    if not result.verified:
        raise RepoError(
            f"{what} has {len(result.signed)} of the {result.threshold} signatures it needs; "
            f"have another key holder run `rms-repo sign {md.signed.type}`"
        )


def snapshot_of(
    previous: Metadata[Snapshot] | None, targets: Metadata[Targets], now: datetime, e: Expiry
) -> Metadata[Snapshot]:
    """The next snapshot: it pins the version of targets.json (rollback protection)."""
    if previous is None:
        staged = Metadata(Snapshot(expires=now + e.snapshot))
    else:
        staged = next_version(previous, now, e)
        old = staged.signed.meta["targets.json"].version
        if targets.signed.version < old:
            raise RepoError(f"targets version {targets.signed.version} is older than {old}")
    staged.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
    return staged


def timestamp_of(
    previous: Metadata[Timestamp] | None, snapshot: Metadata[Snapshot], now: datetime, e: Expiry
) -> Metadata[Timestamp]:
    """The next timestamp: it pins the version, length and hash of snapshot.json."""
    data = snapshot.to_bytes()
    meta = MetaFile.from_data(snapshot.signed.version, data, ["sha256"])
    if previous is None:
        return Metadata(Timestamp(expires=now + e.timestamp, snapshot_meta=meta))
    staged = next_version(previous, now, e)
    staged.signed.snapshot_meta = meta
    return staged


def rotate(
    root: Metadata[Root],
    role: str,
    *,
    add: tuple[Key, ...],
    revoke: tuple[str, ...],
    threshold: int | None,
    now: datetime,
    expiry: Expiry,
) -> Metadata[Root]:
    """The next root version with `role`'s keys changed; to be signed by old and new root keys."""
    if role not in TOP_LEVEL_ROLE_NAMES:
        raise RepoError(f"unknown role {role!r}; one of {sorted(TOP_LEVEL_ROLE_NAMES)}")
    staged = next_version(root, now, expiry)
    for keyid in revoke:
        if keyid not in staged.signed.roles[role].keyids:
            raise RepoError(f"key {keyid[:16]} is not a {role} key")
        staged.signed.revoke_key(keyid, role)
    for key in add:
        staged.signed.add_key(key, role)
    spec = staged.signed.roles[role]
    keys = tuple(staged.signed.keys[k] for k in spec.keyids)
    _check_role_keys(role, RoleKeys(keys, spec.threshold if threshold is None else threshold))
    spec.threshold = spec.threshold if threshold is None else threshold
    return staged


def require_root_rotation(old: Root, new: Metadata[Root]) -> None:
    """RepoError unless `new` is signed by a threshold of both the old and the new root keys."""
    require_threshold(old, new, f"root.json v{new.signed.version} (old root keys)")
    require_threshold(new.signed, new, f"root.json v{new.signed.version} (new root keys)")


def check_trusted_root(data: bytes, now: datetime) -> str:
    """A root.json fit to ship as a node's trust anchor, described in one line; RepoError
    unless it parses as TUF root metadata signed by its own root threshold, with offline
    thresholds of at least 2 and every top-level role present. An expired root is accepted
    (nodes walk from it to the newest root) and said to be expired."""
    try:
        md = Metadata[Root].from_bytes(data)
    except (DeserializationError, ValueError, TypeError, KeyError) as exc:
        raise RepoError(f"not a TUF root.json: {str(exc)[:200]}") from None
    if not isinstance(md.signed, Root):
        raise RepoError(f"not a TUF root.json: its type is {md.signed.type}")
    root = md.signed
    missing = [name for name in TOP_LEVEL_ROLE_NAMES if name not in root.roles]
    if missing:
        raise RepoError(f"root.json lists no keys for {', '.join(missing)}")
    for name in OFFLINE_ROLES:
        if root.roles[name].threshold < MIN_OFFLINE_THRESHOLD:
            raise RepoError(f"root.json: {name} threshold {root.roles[name].threshold} is below 2")
    require_threshold(root, md, f"root.json v{root.version}")
    roles_text = ", ".join(
        f"{name} {root.roles[name].threshold} of {len(root.roles[name].keyids)}"
        for name in ("root", "targets", "snapshot", "timestamp")
    )
    state = "expired" if root.is_expired(now) else "expires"
    return f"root v{root.version}: {roles_text}; {state} {root.expires:%Y-%m-%d}"

"""The target controller: desired configs against reported state, as a list of changes.

Pure: no I/O. A driver applies the changes and decides nothing. CHAP secrets cannot be read
back from tgt or LIO, so an account is identified by its user name: rotating a secret means
a new user name (the Volume Provider derives it from the volume and a generation). A LUN
whose backing file differs is a `TargetConflict`, never a silent swap of the disk under a
live session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from volume_provider.target.model import (
    LUN,
    ChapSecret,
    TargetConfig,
    TargetConflict,
    TargetState,
)


@dataclass(frozen=True)
class CreateTarget:
    """Create the target with its LUN, account and ACL."""

    config: TargetConfig


@dataclass(frozen=True)
class RemoveTarget:
    """Delete the target (ending its sessions) and the accounts only it used."""

    iqn: str
    tid: int
    accounts: tuple[str, ...]


@dataclass(frozen=True)
class BindAccount:
    """Create (if needed) and bind an incoming CHAP account."""

    tid: int
    user: str
    secret: ChapSecret


@dataclass(frozen=True)
class UnbindAccount:
    """Unbind an incoming account from the target."""

    tid: int
    user: str


@dataclass(frozen=True)
class AllowInitiator:
    """Add an initiator address to the target's ACL."""

    tid: int
    address: str


@dataclass(frozen=True)
class DenyInitiator:
    """Remove an initiator address from the target's ACL."""

    tid: int
    address: str


TargetChange = (
    CreateTarget | RemoveTarget | BindAccount | UnbindAccount | AllowInitiator | DenyInitiator
)


def plan_target(want: TargetConfig, have: TargetState | None) -> list[TargetChange]:
    """The changes that turn `have` into `want` (empty when they already agree)."""
    if have is None:
        return [CreateTarget(want)]
    lun = have.lun(LUN)
    if lun is None or lun.backing != want.backing:
        found = "no LUN 1" if lun is None else f"LUN 1 on {lun.backing}"
        raise TargetConflict(
            f"target {want.iqn} exists with {found}, not {want.backing}; it was left as is: "
            "remove it first if the volume really moved"
        )
    tid = have.tid
    changes: list[TargetChange] = []
    # Allow the new address before denying the old one, so the client is never locked out.
    if want.initiator_address not in have.acl:
        changes.append(AllowInitiator(tid, want.initiator_address))
    changes += [DenyInitiator(tid, a) for a in have.acl if a != want.initiator_address]
    if want.chap_user not in have.accounts:
        changes.append(BindAccount(tid, want.chap_user, want.chap_secret))
    changes += [UnbindAccount(tid, u) for u in have.accounts if u != want.chap_user]
    return changes


def plan_removal(iqn: str, actual: Sequence[TargetState]) -> list[TargetChange]:
    """The change that removes target iqn, or none when it is absent."""
    have = next((t for t in actual if t.iqn == iqn), None)
    if have is None:
        return []
    return [RemoveTarget(iqn, have.tid, _sole_accounts(have, actual))]


def plan(desired: Sequence[TargetConfig], actual: Sequence[TargetState]) -> list[TargetChange]:
    """Changes making the backend export exactly `desired`: removals first, then the rest."""
    by_iqn = {t.iqn: t for t in actual}
    wanted = {c.iqn for c in desired}
    changes: list[TargetChange] = []
    for state in actual:
        if state.iqn not in wanted:
            changes += plan_removal(state.iqn, actual)
    used = {t.tid for t in actual if t.iqn in wanted}
    for config in desired:
        have = by_iqn.get(config.iqn)
        if have is None and config.tid in used:
            raise TargetConflict(f"target {config.iqn}: tid {config.tid} is already taken")
        changes += plan_target(config, have)
        used.add(config.tid if have is None else have.tid)
    return changes


def _sole_accounts(target: TargetState, actual: Sequence[TargetState]) -> tuple[str, ...]:
    """Accounts bound to target and to no other target (tgt accounts are global)."""
    others = {u for t in actual if t.iqn != target.iqn for u in t.accounts}
    return tuple(u for u in target.accounts if u not in others)

"""tgtadm output parsing, the target controller over a fake driver, and CHAP hygiene."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from volume_provider.target.changes import (
    AllowInitiator,
    BindAccount,
    CreateTarget,
    DenyInitiator,
    RemoveTarget,
    TargetChange,
    UnbindAccount,
    plan,
)
from volume_provider.target.driver import TargetManager
from volume_provider.target.lio import LioDriver
from volume_provider.target.model import (
    ChapSecret,
    LunState,
    Portal,
    TargetConfig,
    TargetConflict,
    TargetError,
    TargetState,
)
from volume_provider.target.tgt import _what
from volume_provider.target.tgtadm import parse_show

SECRET = "correct-horse-battery"

# `tgtadm -C 7001 --lld iscsi --op show --mode target` from tgt 1.0.85 here (trailing blanks
# trimmed), with the I_T nexus of one logged-in initiator as in the integration test.
SHOW = """Target 1: iqn.2024-01.test:t1
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 1
            Initiator: iqn.2024-01.cloud.true:test-initiator alias: none
            Connection: 0
                IP Address: 10.77.0.2
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00010000
            SCSI SN: beaf10
            Size: 0 MB, Block size: 1
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: null
            Backing store path: None
            Backing store flags:
        LUN: 1
            Type: disk
            SCSI ID: IET     00010001
            SCSI SN: beaf11
            Size: 67 MB, Block size: 512
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: rdwr
            Backing store path: /tmp/tcx.img
            Backing store flags:
    Account information:
        u1
    ACL information:
        127.0.0.1
"""


def cfg(
    n: int = 1, addr: str = "10.77.0.2", user: str = "u1", backing: str = "/tmp/tcx.img"
) -> TargetConfig:
    return TargetConfig(
        f"iqn.2024-01.test:t{n}", n, backing, 64 << 20, user, ChapSecret(SECRET), addr,
        Portal("10.77.0.1", 3260),
    )  # fmt: skip


def test_parse_show_reads_luns_accounts_acl_and_sessions() -> None:
    (t,) = parse_show(SHOW)
    assert (t.tid, t.iqn) == (1, "iqn.2024-01.test:t1")
    assert t.lun(0) == LunState(0, None, 0, 1)
    assert t.lun(1) == LunState(1, "/tmp/tcx.img", 67, 512)
    assert (t.accounts, t.acl, t.sessions) == (("u1",), ("127.0.0.1",), ("10.77.0.2",))
    assert parse_show("") == []


@pytest.mark.parametrize(
    "text",
    ["Garbage first\n", "Target 1: iqn.x\n LUN information:\n  Type: disk\n",
     "Target 1: iqn.x\n LUN information:\n  LUN: 1\n  Size: lots\n",
     "Target 1: iqn.x\n LUN information:\n  LUN: 1\n  no colon here\n"],
)  # fmt: skip
def test_parse_show_rejects_malformed_output(text: str) -> None:
    with pytest.raises(TargetError, match="tgtadm output"):
        parse_show(text)


def state_of(c: TargetConfig, acl: tuple[str, ...] | None = None) -> TargetState:
    lun = LunState(1, c.backing, 64, 512)
    return TargetState(c.iqn, c.tid, (lun,), (c.chap_user,), acl or (c.initiator_address,))


def test_plan_creates_fixes_and_removes_only_the_difference() -> None:
    one, two = cfg(1), cfg(2, user="u2")
    stale = TargetState("iqn.2024-01.test:old", 9, (), ("u9",), ())
    drifted = TargetState(one.iqn, 1, (LunState(1, one.backing, 64, 512),), ("u0",), ("10.0.0.9",))
    changes = plan([one, two], [stale, drifted])
    assert changes == [
        RemoveTarget(stale.iqn, 9, ("u9",)),
        AllowInitiator(1, "10.77.0.2"),
        DenyInitiator(1, "10.0.0.9"),
        BindAccount(1, "u1", ChapSecret(SECRET)),
        UnbindAccount(1, "u0"),
        CreateTarget(two),
    ]
    assert plan([one], [state_of(one)]) == []


def test_plan_refuses_to_swap_a_disk_or_reuse_a_tid() -> None:
    with pytest.raises(TargetConflict, match="left as is"):
        plan([cfg(1, backing="/tmp/other.img")], [state_of(cfg(1))])
    dup = TargetConfig(**{**cfg(3).__dict__, "tid": 1})
    with pytest.raises(TargetConflict, match="tid 1"):
        plan([cfg(1), dup], [state_of(cfg(1))])


def test_shared_accounts_survive_a_removal() -> None:
    a, b = state_of(cfg(1)), state_of(cfg(2))  # both bound to u1
    assert plan([cfg(2)], [a, b]) == [RemoveTarget(a.iqn, 1, ())]


class FakeDriver:
    """In-memory TargetDriver for the manager's tests only."""

    kind = "fake"

    def __init__(self) -> None:
        self.state: dict[str, TargetState] = {}
        self.applied: list[TargetChange] = []

    async def targets(self) -> list[TargetState]:
        return list(self.state.values())

    async def apply(self, changes: Sequence[TargetChange]) -> None:
        for c in changes:
            self.applied.append(c)
            if isinstance(c, CreateTarget):
                self.state[c.config.iqn] = state_of(c.config)
            elif isinstance(c, RemoveTarget):
                del self.state[c.iqn]


async def test_manager_applies_once_then_nothing_and_logs_no_secret() -> None:
    driver = FakeDriver()
    manager = TargetManager(driver)
    with capture_logs() as logs:
        assert await manager.ensure_target(cfg(1)) == [CreateTarget(cfg(1))]
        assert await manager.ensure_target(cfg(1)) == []
        assert await manager.reconcile([]) == [RemoveTarget(cfg(1).iqn, 1, ("u1",))]
        assert await manager.remove_target(cfg(1).iqn) == []
    assert len(driver.applied) == 2
    assert SECRET not in repr(logs) and "[secret]" in repr(logs)


def test_secret_never_prints() -> None:
    c = cfg(1)
    for text in (repr(c), str(c), repr(CreateTarget(c)), f"{c.chap_secret}"):
        assert SECRET not in text
    assert c.chap_secret.reveal() == SECRET
    err = TargetError(f"tgtadm said {SECRET} twice: {SECRET}", SECRET)
    assert SECRET not in str(err) and "[secret]" in str(err)
    argv = ("--op", "new", "--mode", "account", "--user", "u", "--password", SECRET)
    assert _what(argv) == "new account"
    with pytest.raises(TargetError, match="12-255"):
        ChapSecret("short")


def test_config_validation() -> None:
    with pytest.raises(TargetError, match="qualified name"):
        TargetConfig(
            "not-an-iqn", 1, "/x", 1, "u", ChapSecret(SECRET), "10.0.0.1", Portal("10.0.0.2")
        )
    assert str(Portal("fd00::1", 3261)) == "[fd00::1]:3261"


async def test_lio_fails_clearly_without_configfs(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"LIO is not available.*target_core_mod"):
        await LioDriver(tmp_path / "absent").probe()
    with pytest.raises(TargetError, match="before probe"):
        await LioDriver(tmp_path).targets()

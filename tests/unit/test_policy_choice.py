"""Which policy a node runs with: `policydoc.choose` (the decision, from file bytes), the
PolicyFile that reads and keeps the files, the daemon that owns it, and `rms run`'s wiring of
that one Policy into every service."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import pytest

from rms import policydoc
from rms.cli.main import main
from rms.cli.run import run_daemon
from rms.cli.status import render_entitlement
from rms.config import Config, NodeSection, PolicySection, VpnSection
from rms.daemon import Daemon
from rms.dht.service import DhtService
from rms.entitlement.state import ACCEPTED_NAME, PolicyFile
from rms.gossip.core import Gossip
from rms.identity import NodeIdentity
from rms.ledger.canonical import sign
from rms.policy import DEFAULT, Policy
from rms.policydoc import PolicyTrust
from rms.vpn.manager import VpnManager

KEYS = [NodeIdentity.from_seed(bytes([i]) * 32) for i in (21, 22, 23)]
TRUST = PolicyTrust(frozenset(k.public_key for k in KEYS[:2]), threshold=2)
NOW = 1_800_000_000.0  # 2027-01-15
PAST = "2026-01-01T00:00:00Z"
FUTURE = "2030-01-01T00:00:00Z"


def doc(
    version: int,
    signers: Sequence[NodeIdentity] = KEYS[:2],
    expires_at: str | None = FUTURE,
    **fields: Any,
) -> bytes:
    return policydoc.signed_document(
        fields, version, "2026-11-22T00:00:00Z", list(signers), expires_at
    )


def forged(data: bytes) -> bytes:
    d = json.loads(data)
    d["policy"]["entitlement_ratio"] = 0.5
    return json.dumps(d).encode()


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the decision ---------------------------------------------------------------------------


def test_without_trust_the_defaults_apply_and_a_document_is_ignored() -> None:
    assert policydoc.choose(None, None, None, NOW) == policydoc.PolicyChoice(None, None, None)
    got = policydoc.choose(None, doc(3), doc(4), NOW)
    assert got.document is None and got.keep is None
    assert "no trusted policy keys" in str(got.problem)


def test_a_good_candidate_is_chosen_and_kept() -> None:
    data = doc(3, vpn_capacity=10)
    got = policydoc.choose(TRUST, None, data, NOW)
    assert got.document is not None and got.document.version == 3
    assert got.document.policy == Policy(vpn_capacity=10)
    assert got.keep == data and got.problem is None


def test_the_kept_document_applies_when_the_candidate_is_the_same() -> None:
    data = doc(3)
    got = policydoc.choose(TRUST, data, data, NOW)
    assert got.document is not None and got.document.version == 3
    assert got.keep is None and got.problem is None
    assert policydoc.choose(TRUST, data, None, NOW).document == got.document


def test_a_newer_candidate_replaces_the_kept_one() -> None:
    got = policydoc.choose(TRUST, doc(3), doc(4, entitlement_ratio=0.45), NOW)
    assert got.document is not None and got.document.policy.entitlement_ratio == 0.45
    assert got.keep is not None and got.problem is None


def test_a_replayed_older_version_is_refused_and_the_kept_one_stays() -> None:
    got = policydoc.choose(TRUST, doc(5), doc(4), NOW)
    assert got.document is not None and got.document.version == 5 and got.keep is None
    assert "older than the accepted 5" in str(got.problem) and "keeping version 5" in str(
        got.problem
    )


def test_another_document_of_the_kept_version_is_refused() -> None:
    got = policydoc.choose(TRUST, doc(5), doc(5, entitlement_ratio=0.45), NOW)
    assert got.document is not None and got.document.policy == DEFAULT
    assert "differs from the accepted document of the same version" in str(got.problem)


def test_an_expired_candidate_is_refused() -> None:
    got = policydoc.choose(TRUST, None, doc(3, expires_at=PAST), NOW)
    assert got.document is None and got.keep is None
    assert "expired at 2026-01-01T00:00:00Z" in str(got.problem)
    assert "keeping the built-in defaults" in str(got.problem)


def test_a_kept_document_that_expires_stays_in_force_and_says_so() -> None:
    got = policydoc.choose(TRUST, doc(3, expires_at=PAST), None, NOW)
    assert got.document is not None and got.document.version == 3
    assert "expired" in str(got.problem) and "still applied" in str(got.problem)


def test_a_document_without_expiry_never_expires() -> None:
    got = policydoc.choose(TRUST, None, doc(3, expires_at=None), 1e12)
    assert got.document is not None and got.problem is None


def test_a_kept_document_the_keys_no_longer_vouch_for_falls_back_to_the_defaults() -> None:
    other = PolicyTrust(frozenset({KEYS[2].public_key}), threshold=1)
    got = policydoc.choose(other, doc(3), None, NOW)
    assert got.document is None and "no longer verifies" in str(got.problem)


def _oversized() -> bytes:
    data = json.loads(doc(3))
    data["issued_at"] = "x" * (policydoc.MAX_DOCUMENT_BYTES + 1)
    return json.dumps(data).encode()


def resigned(change: Callable[[dict[str, Any]], None]) -> bytes:
    """Version 4 with `change` made to its body, then properly signed by the trusted keys."""
    body = json.loads(doc(4, expires_at=None))
    del body["signatures"]
    change(body)
    sigs = [{"key": k.public_key.hex(), "sig": sign(k, policydoc.DOMAIN, body)} for k in KEYS[:2]]
    return policydoc.encode({**body, "signatures": sigs})


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (doc(4)[: len(doc(4)) // 2], "UTF-8 JSON"),  # truncated
        (b"\x00\xff garbage \x13", "UTF-8 JSON"),
        (b"", "UTF-8 JSON"),
        (b'{"format": "truecloud-policy/1"}', "missing"),
        (_oversized(), "larger than"),
        (forged(doc(4)), "forged or altered"),
        (doc(4, signers=[]), "unsigned"),
        (doc(4, signers=[KEYS[0]]), "1 of the 2"),
        (doc(4, signers=[KEYS[0], KEYS[2]]), "1 of the 2"),  # the second signer is not trusted
        (resigned(lambda b: b["policy"].update(vpn_capacity=1)), "policy values refused"),
        (resigned(lambda b: b.update(expires_at="next year")), "expires_at must be a UTC time"),
        (resigned(lambda b: b.update(expires_at=2**40)), "expires_at must be a UTC time"),
        (resigned(lambda b: b.update(surprise=1)), "unknown"),
    ],
)
def test_bad_candidates_are_refused_and_change_nothing(candidate: bytes, reason: str) -> None:
    kept = doc(3, entitlement_ratio=0.45)
    got = policydoc.choose(TRUST, kept, candidate, NOW)
    assert got.document is not None and got.document.version == 3
    assert got.document.policy.entitlement_ratio == 0.45
    assert got.keep is None
    assert reason in str(got.problem) and "keeping version 3" in str(got.problem)


def test_make_body_refuses_a_bad_expiry() -> None:
    with pytest.raises(policydoc.PolicyDocError):
        policydoc.make_body(DEFAULT, 1, "now", "2027-02-30T00:00:00Z")


def test_rms_policy_new_sets_an_expiry_that_verify_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "a.key"
    assert main(["policy", "keygen", str(key)]) == 0
    trust = ["--trust", capsys.readouterr().out.strip()]
    for expires, verdict in ((FUTURE, 0), (PAST, 1)):
        out = tmp_path / f"{expires[:4]}.json"
        assert main(["policy", "new", str(out), "--version", "2", "--expires", expires]) == 0
        assert main(["policy", "sign", str(out), "--key", str(key)]) == 0
        assert json.loads(out.read_bytes())["expires_at"] == expires
        assert main(["policy", "verify", str(out), *trust]) == verdict
    assert "expired at 2026-01-01T00:00:00Z" in capsys.readouterr().err
    bad = ["policy", "new", str(tmp_path / "x.json"), "--version", "2", "--expires", "soon"]
    assert main(bad) == 2


# -- the files and the daemon ----------------------------------------------------------------


def config(state: Path, document: str = "", vpn: bool = False) -> Config:
    keys = tuple(k.public_key.hex() for k in KEYS[:2])
    return Config(
        node=NodeSection(state_dir=state),
        policy=PolicySection(keys=keys, threshold=2, document=document),
        vpn=VpnSection(enabled=vpn),
    )


def test_the_policy_file_keeps_the_running_policy_and_asks_for_a_restart(tmp_path: Path) -> None:
    candidate = tmp_path / "drop" / "policy.json"
    candidate.parent.mkdir()
    candidate.write_bytes(doc(3, vpn_capacity=10))
    clock = Clock()
    files = PolicyFile.from_config(config(tmp_path, str(candidate)), clock)
    assert files.start() == Policy(vpn_capacity=10)
    assert (tmp_path / ACCEPTED_NAME).read_bytes() == candidate.read_bytes()
    assert files.problem() is None
    candidate.write_bytes(doc(4, vpn_capacity=12))
    files.refresh()
    assert files.policy == Policy(vpn_capacity=10)  # the running daemon keeps its policy
    assert "version 4 accepted while running 3: restart rms" in str(files.problem())
    shown = files.as_json()
    assert shown["version"] == 3 and shown["accepted"] == 4
    assert shown["signers"] == sorted(k.public_key.hex() for k in KEYS[:2])
    candidate.write_bytes(doc(2))  # a rollback after the newer one was kept
    files.refresh()
    assert "older than the accepted 4" in str(files.problem())
    restarted = PolicyFile.from_config(config(tmp_path, str(candidate)), clock)
    assert restarted.start() == Policy(vpn_capacity=12)
    assert "older than the accepted 4" in str(restarted.problem())


def test_the_policy_file_notices_expiry_as_time_passes(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_bytes(doc(3, expires_at="2027-02-01T00:00:00Z"))
    clock = Clock()
    files = PolicyFile.from_config(config(tmp_path), clock)
    files.start()
    assert files.problem() is None
    clock.now += 30 * 86400
    files.refresh()
    assert files.policy.vpn_capacity == DEFAULT.vpn_capacity
    assert files.as_json()["version"] == 3 and "expired" in str(files.problem())


def test_the_daemon_runs_with_the_signed_policy(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_bytes(doc(6, gossip_max_hops=9))
    daemon = Daemon(config(tmp_path), KEYS[2])
    assert daemon.policy == Policy(gossip_max_hops=9)
    assert daemon.board.problems() == []


def test_the_daemon_reports_a_refused_document_and_keeps_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_bytes(forged(doc(6)))
    daemon = Daemon(config(tmp_path), KEYS[2])
    assert daemon.policy == DEFAULT
    (problem,) = daemon.board.problems()
    assert problem.startswith("policy: ") and "forged or altered" in problem


def test_rms_run_hands_the_daemon_policy_to_every_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The VPN manager (and through it admission, rosters, guardians), the broadcast and
    the DHT are built with the policy of the signed document, not the built-in one."""
    (tmp_path / "policy.json").write_bytes(doc(6, vpn_target=3, gossip_max_hops=9))
    seen: dict[str, object] = {}

    def recording(name: str, real: Any, position: int) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            seen[name] = kwargs["policy"] if "policy" in kwargs else args[position]
            return real(*args, **kwargs)

        return build

    daemons: list[Daemon] = []

    def keep_daemon(*args: Any) -> Daemon:
        daemons.append(Daemon(*args))
        return daemons[-1]

    def not_run(main: Coroutine[Any, Any, None]) -> None:
        main.close()

    monkeypatch.setattr("rms.cli.run.VpnManager", recording("vpn", VpnManager, 99))
    monkeypatch.setattr("rms.cli.run.Gossip", recording("gossip", Gossip, 2))
    monkeypatch.setattr("rms.cli.run.DhtService", recording("dht", DhtService, 99))
    monkeypatch.setattr("rms.cli.run.Daemon", keep_daemon)
    monkeypatch.setattr("rms.cli.run._run", not_run)
    run_daemon(config(tmp_path, vpn=True))
    expected = Policy(vpn_target=3, gossip_max_hops=9)
    assert seen == {"vpn": expected, "gossip": expected, "dht": expected}
    assert daemons[0].policy == expected


def test_rms_status_names_the_policy_in_force_and_the_measured_room() -> None:
    signers = sorted(k.public_key.hex() for k in KEYS[:2])
    section = {
        "contribution": {"storage_bytes": 20 * 2**30, "capacity_bytes": 2**31, "leased_bytes": 0},
        "entitlement": {"storage_bytes": 2**30, "cpu_millicores": 0},
        "policy": {"version": 7, "signers": signers},
    }
    lines = render_entitlement(section)
    assert "  measured      2.0 GiB room, 0 B leased (Volume Provider)" in lines
    assert lines[-1] == (
        f"  policy        signed document, version 7, signed by {signers[0][:16]}…, "
        f"{signers[1][:16]}…"
    )
    section["policy"] = {"version": None, "signers": []}
    assert render_entitlement(section)[-1] == "  policy        built-in defaults"

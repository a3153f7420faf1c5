"""The CFS audits its providers by scrubbing a real pool (issue 6): zfs-fuse RAIDZ3 over 8
volumes exported by tgtd, reached through wireguard-go links and libiscsi bridges
(tests/integration/cfs_support.py), one of which lost what it was sent.

The lost writes are made for real on the provider's side: the provider's backing file is
zeroed under tgtd over the region the pool's data went to, as a provider that acknowledged
writes and kept nothing would leave it. `cfs.audit.ScrubAuditor` then runs its rounds on the
pool: it starts `zpool scrub`, waits for it to end and turns each device's new checksum
errors into a report. What stands in for the RMS is its control API only: the recorder below
signs each body with a node key and checks it with `rms.audit.report`, exactly as the
daemon's `POST /v1/audits/sign` does (that route, and the DHT publication behind it, are
tests/integration/test_audit_daemon.py and tests/unit/test_audit_dht.py). The providers of the
harness have made-up node ids, so their node keys are given to the auditor rather than
looked up in a DHT.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from cfs.audit import ScrubAuditor
from rms.audit import report as rep
from rms.identity import NodeIdentity
from tests.integration.cfs_support import TOOLS, digest, running_cfs, written

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS) or not Path("/dev/fuse").exists(),
        reason="needs tgt, zfs-fuse, wireguard-go, wireguard-tools, util-linux, fuse3",
    ),
    pytest.mark.timeout(600),
]

NODE = NodeIdentity.from_seed(b"\x5a" * 32)
LOST = (4 << 20, 12 << 20)  # past the front labels and boot block: where the data went


class Recorder:
    """The part of the RMS control API the auditor uses: sign (and check) report bodies."""

    def __init__(self) -> None:
        self.reports: list[rep.AuditReport] = []

    async def post_json(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        assert route == "/v1/audits/sign", route
        signed = rep.sign_report(body["body"], NODE)
        self.reports.append(rep.check(signed, time.time()))
        return {"report": signed, "passed": self.reports[-1].passed, "published": 0}


def lose_writes(backing: Path) -> None:
    """Zero what the provider was sent over LOST, as if it had never been written."""
    with backing.open("r+b") as f:
        f.seek(LOST[0])
        f.write(bytes(LOST[1] - LOST[0]))
        f.flush()
        os.fsync(f.fileno())


async def test_a_scrub_round_reports_the_provider_that_lost_writes_and_only_it(
    tmp_path: Path,
) -> None:
    async with running_cfs(tmp_path, count=8) as (cfs, source, root):
        assert cfs.healer is not None
        data, want = await written(cfs, root, 8)
        slots = cfs.healer.slots
        keys = {s.lease.provider.provider: NodeIdentity.from_seed(os.urandom(32)) for s in slots}
        victim = slots[2].lease.provider.provider
        await asyncio.to_thread(lose_writes, Path(source.providers[victim].config().backing))
        recorder = Recorder()
        auditor = ScrubAuditor(recorder, NODE.public_key, every_s=1.0)  # type: ignore[arg-type]
        auditor.keys = {p: k.public_key for p, k in keys.items()}
        deadline = time.monotonic() + 300
        while not recorder.reports and time.monotonic() < deadline:
            await asyncio.sleep(1)
            await auditor.step(cfs)
        assert auditor.rounds.rounds == 1 and len(recorder.reports) == 8
        by_provider = {r.provider: r for r in recorder.reports}
        lost = by_provider.pop(keys[victim].public_key)
        print(f"lost writes: {lost.failed} checksum errors of {lost.checked}")
        assert lost.kind == "scrub" and lost.failed > 0 and not lost.passed
        assert all(r.passed and r.checked >= 1 for r in by_provider.values())
        assert all(r.auditor == NODE.public_key and r.lease for r in recorder.reports)
        # RAIDZ3 repaired it from parity: every byte still reads back
        assert await asyncio.to_thread(digest, data) == want

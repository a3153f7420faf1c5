"""zpool status parsing over outputs captured from zfs-fuse 0.7 on this machine."""

from __future__ import annotations

import pytest

from cfs.zfs.status import ZfsError, parse_scan, parse_status

# `zpool offline tp d1` on a RAIDZ3 of 8 files (zfs-fuse 0.7), captured verbatim.
OFFLINE = """\
  pool: tp
 state: DEGRADED
status: One or more devices has been taken offline by the administrator.
\tSufficient replicas exist for the pool to continue functioning in a
\tdegraded state.
action: Online the device using 'zpool online' or replace the device with
\t'zpool replace'.
 scrub: none requested
config:

\tNAME             STATE     READ WRITE CKSUM
\ttp               DEGRADED     0     0     0
\t  raidz3-0       DEGRADED     0     0     0
\t    /tmp/tcz/d1  OFFLINE      0     0     0
\t    /tmp/tcz/d2  ONLINE       0     0     0
\t    /tmp/tcz/d3  ONLINE       0     0     0
\t    /tmp/tcz/d4  ONLINE       0     0     0
\t    /tmp/tcz/d5  ONLINE       0     0     0
\t    /tmp/tcz/d6  ONLINE       0     0     0
\t    /tmp/tcz/d7  ONLINE       0     0     0
\t    /tmp/tcz/d8  ONLINE       0     0     0

errors: No known data errors
"""

# After `zpool replace tp d2 d9` had resilvered, captured verbatim.
RESILVERED = """\
  pool: tp
 state: DEGRADED
status: One or more devices has been taken offline by the administrator.
\tSufficient replicas exist for the pool to continue functioning in a
\tdegraded state.
action: Online the device using 'zpool online' or replace the device with
\t'zpool replace'.
 scrub: resilver completed after 0h0m with 0 errors on Sat Nov 21 22:03:40 2026
config:

\tNAME             STATE     READ WRITE CKSUM
\ttp               DEGRADED     0     0     0
\t  raidz3-0       DEGRADED     0     0     0
\t    /tmp/tcz/d1  OFFLINE      0     0     0
\t    /tmp/tcz/d9  ONLINE       0     0     0  4.07M resilvered
\t    /tmp/tcz/d3  ONLINE       0     0     0
\t    /tmp/tcz/d4  ONLINE       0     0     0
\t    /tmp/tcz/d5  ONLINE       0     0     0
\t    /tmp/tcz/d6  ONLINE       0     0     0
\t    /tmp/tcz/d7  ONLINE       0     0     0
\t    /tmp/tcz/d8  ONLINE       0     0     0

errors: No known data errors
"""

# After `zpool scrub tp`, captured verbatim.
SCRUBBED = """\
  pool: tp
 state: DEGRADED
status: One or more devices has been taken offline by the administrator.
\tSufficient replicas exist for the pool to continue functioning in a
\tdegraded state.
action: Online the device using 'zpool online' or replace the device with
\t'zpool replace'.
 scrub: scrub completed after 0h0m with 0 errors on Sat Nov 21 22:03:43 2026
config:

\tNAME             STATE     READ WRITE CKSUM
\ttp               DEGRADED     0     0     0
\t  raidz3-0       DEGRADED     0     0     0
\t    /tmp/tcz/d1  OFFLINE      0     0     0
\t    /tmp/tcz/d9  ONLINE       0     0     0
\t    /tmp/tcz/d3  ONLINE       0     0     0
\t    /tmp/tcz/d4  ONLINE       0     0     0
\t    /tmp/tcz/d5  ONLINE       0     0     0
\t    /tmp/tcz/d6  ONLINE       0     0     0
\t    /tmp/tcz/d7  ONLINE       0     0     0
\t    /tmp/tcz/d8  ONLINE       0     0     0

errors: No known data errors
"""

# The 8-LUN integration test with 4 targets killed (device paths shortened).
UNAVAIL = """\
  pool: tcpool
 state: UNAVAIL
status: One or more devices are faulted in response to IO failures.
action: Make sure the affected devices are connected, then run 'zpool clear'.
   see: http://www.sun.com/msg/ZFS-8000-HC
 scrub: resilver completed after 0h0m with 0 errors on Sat Nov 21 22:05:33 2026
config:

\tNAME                 STATE     READ WRITE CKSUM
\ttcpool               UNAVAIL      0    64     0  insufficient replicas
\t  raidz3-0           UNAVAIL      0    14     0  insufficient replicas
\t    /b/vol9/mnt/disk ONLINE       0     0     0  9.73M resilvered
\t    /b/vol2/mnt/disk UNAVAIL      0     0     0  experienced I/O failures
\t    /b/vol3/mnt/disk UNAVAIL      0     0     0  experienced I/O failures
\t    /b/vol4/mnt/disk UNAVAIL      0    14     0  experienced I/O failures
\t    /b/vol5/mnt/disk UNAVAIL      0    14     0  experienced I/O failures
\t    /b/vol6/mnt/disk ONLINE       0     0     0
\t    /b/vol7/mnt/disk ONLINE       0     0     0
\t    /b/vol8/mnt/disk ONLINE       0     0     0

errors: 138 data errors, use '-v' for a list
"""


def test_degraded_pool_with_an_offline_device() -> None:
    s = parse_status(OFFLINE)
    assert (s.name, s.state) == ("tp", "DEGRADED")
    assert [v.name for v in s.vdevs[:2]] == ["tp", "raidz3-0"]
    assert len(s.leaves) == 8 and s.leaves[0].state == "OFFLINE"
    assert [v.depth for v in s.vdevs[:3]] == [0, 1, 2]
    assert s.errors == "No known data errors"


def test_resilver_note_and_scan_line() -> None:
    s = parse_status(RESILVERED)
    d9 = s.device("/tmp/tcz/d9")
    assert d9 is not None and d9.state == "ONLINE" and d9.note == "4.07M resilvered"
    assert s.scan.kind == "resilver" and not s.scan.in_progress
    assert parse_status(SCRUBBED).scan.kind == "scrub"


def test_unavailable_pool_counts_errors_and_lost_devices() -> None:
    s = parse_status(UNAVAIL)
    assert s.state == "UNAVAIL" and s.vdevs[0].write_errors == "64"
    assert s.vdevs[0].note == "insufficient replicas"
    assert sum(v.state == "UNAVAIL" for v in s.leaves) == 4
    assert not s.vdevs[0].healthy and s.leaves[0].healthy
    assert s.errors.startswith("138 data errors")


def test_scan_progress_in_both_dialects() -> None:
    zfs_fuse = parse_scan("resilver in progress for 0h0m, 45.23% done, 0h0m to go")
    assert zfs_fuse.in_progress and zfs_fuse.percent == 45.23
    openzfs = parse_scan(
        "resilver in progress since Sun Jan  1 00:00:00 2023\n 1.2G done, 12.5% done"
    )
    assert openzfs.kind == "resilver" and openzfs.percent == 12.5
    assert parse_scan("none requested").kind == "none"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage\n",
        "  pool: tp\n state: WEIRD\nconfig:\n\ttp WEIRD 0 0 0\n",
        "  pool: tp\n state: ONLINE\nconfig:\n\tother ONLINE 0 0 0\n",
        "  pool: tp\n state: ONLINE\nconfig:\n\ttp ONLINE zero 0 0\n",
        "  pool: tp\n state: ONLINE\nconfig:\n\ttp ONLINE\n",
        OFFLINE.replace("OFFLINE      0     0     0", "OFFLINE"),
    ],
)
def test_malformed_output_is_a_clear_error(text: str) -> None:
    with pytest.raises(ZfsError, match="zpool status"):
        parse_status(text)

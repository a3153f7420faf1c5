"""The last record seq the node signed per DHT key, kept in its state directory.

A replica refuses a seq lower than or equal to the one it holds (docs/dht.md, "Records"),
so a node whose clock stepped back while it was down would sign records that nobody takes
until the clock caught up. The core never reuses a seq within one run (`rms.dht.records.Seqs`);
this file carries them across restarts. It is ours alone, but read as untrusted input all the
same: anything malformed is skipped, never raised, and the node goes on with clock seqs.

Format: JSON `{"version": 1, "seqs": {"<64 hex digits>": seq, ...}}`, written to a temporary
file and renamed over the old one, so a crash leaves either version whole.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rms.dht.records import Seqs

__all__ = ["FILE_NAME", "MAX_BYTES", "SeqFileError", "SeqKeeper", "load", "save"]

FILE_NAME = "dht-seqs.json"
MAX_BYTES = 1 << 20  # 4096 keys take about 400 KiB
VERSION = 1
MAX_SEQ = 2**63 - 1


class SeqFileError(Exception):
    """The file cannot be used at all; the text says why (the node starts without it)."""


def load(path: Path) -> tuple[dict[bytes, int], int]:
    """The seqs in `path` and how many entries were skipped; {} if there is no file yet.

    Raises SeqFileError if the file is unreadable, too large or not this format.
    """
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}, 0
    except OSError as e:
        raise SeqFileError(f"cannot read {path.name}: {e.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise SeqFileError(f"{path.name} is larger than {MAX_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise SeqFileError(f"{path.name} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise SeqFileError(f"{path.name} is not a version {VERSION} seq file")
    entries = doc.get("seqs")
    if not isinstance(entries, dict):
        raise SeqFileError(f"{path.name} has no seqs map")
    seqs: dict[bytes, int] = {}
    for key, seq in entries.items():
        parsed = _key(key)
        if parsed is None or type(seq) is not int or not 0 <= seq < MAX_SEQ:
            continue
        seqs[parsed] = seq
    return seqs, len(entries) - len(seqs)


def save(path: Path, seqs: Mapping[bytes, int]) -> None:
    """Write `seqs` to `path` atomically; raises OSError."""
    doc = {"version": VERSION, "seqs": {key.hex(): seq for key, seq in seqs.items()}}
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="ascii") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _key(text: object) -> bytes | None:
    if not isinstance(text, str) or len(text) != 64:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


class SeqKeeper:
    """Restores the core's `Seqs` from the state directory, and saves them when they change."""

    def __init__(
        self, state_dir: Path | None, seqs: Seqs, log: Any, counters: Counter[str]
    ) -> None:
        self.path = None if state_dir is None else state_dir / FILE_NAME
        self.seqs, self.log, self.counters = seqs, log, counters
        self.saved = self._restore()

    def _restore(self) -> int:
        if self.path is None:
            return self.seqs.changes
        try:
            found, skipped = load(self.path)
        except SeqFileError as e:  # clock seqs from now on; the next save rewrites it
            self.log.warning("dht.seqs_unreadable", error=str(e))
            return self.seqs.changes
        if skipped:
            self.log.warning("dht.seqs_skipped", skipped=skipped)
        self.seqs.restore(found)
        return self.seqs.changes

    def save(self) -> None:
        """Write the seqs if they changed since the last write; counts a failure."""
        if self.path is None or self.seqs.changes == self.saved:
            return
        try:
            save(self.path, self.seqs.last)
        except OSError as e:
            self.counters["seq_save_errors"] += 1
            self.log.warning("dht.seqs_not_saved", error=e.strerror)
            return
        self.saved = self.seqs.changes

"""A bounded, synchronous iSCSI session over libiscsi (libiscsi.so.7) through ctypes.

Only the calls PLATFORM.md lists as working are used, and no struct layout beyond `struct
scsi_iovec`, the leading `int status` of `struct scsi_task` and the first two fields of
`struct scsi_readcapacity16`. Every wait is bounded: libiscsi's sync calls otherwise
reconnect forever when the target dies (PLATFORM.md), so auto-reconnect is off and a task
timeout is set; a broken session raises `IscsiError` and stays broken. No error text ever
carries the CHAP secret: libiscsi's own messages name the user at most.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

LIBRARY = "libiscsi.so.7"
SESSION_NORMAL = 2  # enum iscsi_session_type
HEADER_DIGEST_NONE_CRC32C = 1  # enum iscsi_header_digest: offer none, accept CRC32C
SCSI_STATUS_GOOD = 0


class IscsiError(OSError):
    """A libiscsi call failed: login refused, session lost, SCSI error or timeout."""


class ScsiIovec(ctypes.Structure):
    """`struct scsi_iovec` of scsi-lowlevel.h."""

    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _ReadCapacity16(ctypes.Structure):
    """The leading fields of `struct scsi_readcapacity16`, all the bridge needs."""

    _fields_ = (("returned_lba", ctypes.c_uint64), ("block_length", ctypes.c_uint32))


@dataclass(frozen=True)
class Capacity:
    """What READ CAPACITY(16) reported: block size and block count."""

    block_size: int
    blocks: int

    @property
    def size(self) -> int:
        """The LUN's size in bytes."""
        return self.block_size * self.blocks


def load(name: str = LIBRARY) -> ctypes.CDLL:
    """Load libiscsi and declare the prototypes used here; IscsiError when it is missing."""
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        raise IscsiError(f"cannot load {name}: install Debian libiscsi7") from e
    _declare(lib)
    return lib


def _declare(lib: ctypes.CDLL) -> None:
    p, i, s, u32, u64 = (
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint32,
        ctypes.c_uint64,
    )
    iov = ctypes.POINTER(ScsiIovec)
    protos: dict[str, tuple[Any, list[Any]]] = {
        "iscsi_create_context": (p, [s]),
        "iscsi_destroy_context": (i, [p]),
        "iscsi_get_error": (s, [p]),
        "iscsi_set_targetname": (i, [p, s]),
        "iscsi_set_session_type": (i, [p, i]),
        "iscsi_set_header_digest": (i, [p, i]),
        "iscsi_set_initiator_username_pwd": (i, [p, s, s]),
        "iscsi_set_timeout": (i, [p, i]),
        "iscsi_set_noautoreconnect": (None, [p, i]),
        "iscsi_set_reconnect_max_retries": (None, [p, i]),
        "iscsi_full_connect_sync": (i, [p, s, i]),
        "iscsi_logout_sync": (i, [p]),
        "iscsi_readcapacity16_sync": (p, [p, i]),
        "iscsi_synchronizecache10_sync": (p, [p, i, i, i, i, i]),
        "scsi_datain_unmarshall": (p, [p]),
        "scsi_free_scsi_task": (None, [p]),
        "iscsi_read16_iov_sync": (p, [p, i, u64, u32, i, i, i, i, i, i, iov, i]),
        "iscsi_write16_iov_sync": (p, [p, i, u64, p, u32, i, i, i, i, i, i, iov, i]),
    }
    for fname, (restype, argtypes) in protos.items():
        fn = getattr(lib, fname)
        fn.restype, fn.argtypes = restype, argtypes


@dataclass(frozen=True)
class LoginParams:
    """Where and as whom to log in; the secret is never part of repr()."""

    portal: str
    iqn: str
    lun: int
    initiator_iqn: str
    chap_user: str | None = None
    chap_secret: str | None = None
    timeout_s: int = 5

    def __repr__(self) -> str:
        return f"LoginParams(portal={self.portal!r}, iqn={self.iqn!r}, lun={self.lun})"


class Session:
    """One logged-in iSCSI session to one LUN; not thread-safe (the bridge serialises)."""

    def __init__(self, params: LoginParams, lib: ctypes.CDLL | None = None) -> None:
        self.lib = lib if lib is not None else load()
        self.params = params
        self.ctx: int | None = self.lib.iscsi_create_context(params.initiator_iqn.encode())
        if not self.ctx:
            raise IscsiError("libiscsi could not create a context")
        self.capacity = Capacity(512, 0)

    def login(self) -> Capacity:
        """Log in with CHAP (if given), bounded timeouts, and read the LUN's capacity."""
        lib, ctx, prm = self.lib, self.ctx, self.params
        lib.iscsi_set_targetname(ctx, prm.iqn.encode())
        lib.iscsi_set_session_type(ctx, SESSION_NORMAL)
        lib.iscsi_set_header_digest(ctx, HEADER_DIGEST_NONE_CRC32C)
        if prm.chap_user is not None and prm.chap_secret is not None:
            lib.iscsi_set_initiator_username_pwd(
                ctx, prm.chap_user.encode(), prm.chap_secret.encode()
            )
        lib.iscsi_set_timeout(ctx, prm.timeout_s)
        lib.iscsi_set_noautoreconnect(ctx, 1)
        lib.iscsi_set_reconnect_max_retries(ctx, 0)
        if lib.iscsi_full_connect_sync(ctx, prm.portal.encode(), prm.lun) != 0:
            raise IscsiError(f"login to {prm.iqn} at {prm.portal} failed: {self.error()}")
        self.capacity = self._read_capacity()
        return self.capacity

    def _read_capacity(self) -> Capacity:
        task = self.lib.iscsi_readcapacity16_sync(self.ctx, self.params.lun)
        try:
            self._check(task, "READ CAPACITY(16)")
            data = self.lib.scsi_datain_unmarshall(task)
            if not data:
                raise IscsiError("READ CAPACITY(16) returned no data")
            rc = ctypes.cast(data, ctypes.POINTER(_ReadCapacity16)).contents
            return Capacity(int(rc.block_length), int(rc.returned_lba) + 1)
        finally:
            self._free(task)

    def read(self, lba: int, buf: ctypes.Array[ctypes.c_char]) -> None:
        """Read len(buf) bytes (whole blocks) at lba straight into buf."""
        iov = ScsiIovec(ctypes.cast(buf, ctypes.c_void_p), len(buf))
        args = (0, 0, 0, 0, 0, ctypes.byref(iov), 1)
        bs = self.capacity.block_size
        task = self.lib.iscsi_read16_iov_sync(self.ctx, self.params.lun, lba, len(buf), bs, *args)
        self._done(task, "READ(16)")

    def write(self, lba: int, buf: ctypes.Array[ctypes.c_char]) -> None:
        """Write buf (whole blocks) at lba."""
        iov = ScsiIovec(ctypes.cast(buf, ctypes.c_void_p), len(buf))
        args = (0, 0, 0, 0, 0, ctypes.byref(iov), 1)
        bs, lun = self.capacity.block_size, self.params.lun
        task = self.lib.iscsi_write16_iov_sync(self.ctx, lun, lba, None, len(buf), bs, *args)
        self._done(task, "WRITE(16)")

    def flush(self) -> None:
        """SYNCHRONIZE CACHE(10) over the whole LUN, so fsync means durable on the target."""
        task = self.lib.iscsi_synchronizecache10_sync(self.ctx, self.params.lun, 0, 0, 0, 0)
        self._done(task, "SYNCHRONIZE CACHE(10)")

    def close(self) -> None:
        """Log out (best effort) and free the context; safe to call twice."""
        if self.ctx:
            self.lib.iscsi_logout_sync(self.ctx)
            self.lib.iscsi_destroy_context(self.ctx)
        self.ctx = None

    def error(self) -> str:
        """libiscsi's last error text for this context."""
        raw = self.lib.iscsi_get_error(self.ctx) if self.ctx else None
        return raw.decode(errors="replace") if raw else "unknown error"

    def _done(self, task: int | None, what: str) -> None:
        try:
            self._check(task, what)
        finally:
            self._free(task)

    def _check(self, task: int | None, what: str) -> None:
        if not task:
            raise IscsiError(f"{what} failed: {self.error()}")
        status = ctypes.cast(task, ctypes.POINTER(ctypes.c_int)).contents.value
        if status != SCSI_STATUS_GOOD:
            raise IscsiError(f"{what} failed with SCSI status {status:#x}: {self.error()}")

    def _free(self, task: int | None) -> None:
        if task:
            self.lib.scsi_free_scsi_task(task)

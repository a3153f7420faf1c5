"""The userspace backend: one `wireguard-go -f NAME` per interface, driven over its UAPI socket.

- create: posix_spawn `wireguard-go -f NAME` in its own session (see rms.wg.process), wait
  until /var/run/wireguard/NAME.sock answers with that pid as its owner (SO_PEERCRED), then
  set the private key and port in one UAPI `set`. Any failure stops the process again.
- delete: find the socket's owner by SO_PEERCRED, check it is wireguard-go, SIGTERM it (then
  SIGKILL), wait for its exit through a pidfd; wireguard-go removes its socket and its TUN
  link as it exits, and a stale socket left by a killed one is unlinked.
- get/apply: one short UAPI connection per request, bounded in size and time; addresses and
  the up flag through rtnetlink (rms.wg.links).

OS errors are translated into WireGuardError here and nowhere else. The request bytes of a
`set` carry the private key in hex: they go to the socket and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
from dataclasses import replace
from pathlib import Path

import structlog

from rms.wg import process, uapi
from rms.wg.changes import (
    Change,
    SetListenPort,
    SetPrivateKey,
    WgChange,
    describe_all,
    link_changes,
    wg_changes,
)
from rms.wg.errors import (
    ForeignInterface,
    InterfaceNotFound,
    UapiError,
    WireGuardError,
    WireGuardUnavailable,
)
from rms.wg.errors import os_error as _os_error
from rms.wg.keys import WgPrivateKey
from rms.wg.links import Links
from rms.wg.model import InterfaceState, check_name

RUN_DIR = Path("/var/run/wireguard")  # fixed inside wireguard-go (ipc.socketDirectory)
PROGRAM = "wireguard-go"
# wireguard-go refuses to start where a kernel module could be loaded unless told this.
_ENV_USERSPACE = "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"
_PEERCRED = struct.Struct("3i")
_POLL_S = 0.02

log = structlog.get_logger("rms.wg")


class UserspaceDriver:
    """WireGuard through wireguard-go processes, in the caller's network and mount namespace."""

    kind = "userspace"

    def __init__(
        self,
        *,
        binary: str = PROGRAM,
        log_dir: Path | None = None,
        log_level: str = "error",
        run_dir: Path = RUN_DIR,
        links: Links | None = None,
        start_timeout: float = 5.0,
        stop_timeout: float = 5.0,
        io_timeout: float = 5.0,
    ) -> None:
        # run_dir is where wireguard-go puts its sockets; only tests of the client change it.
        self._binary = binary
        self._log_dir = log_dir
        self._log_level = log_level  # wireguard-go's LOG_LEVEL: verbose, error or silent
        self._run_dir = run_dir
        self._links = links or Links()
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._io_timeout = io_timeout

    def socket_path(self, name: str) -> Path:
        """Where the interface's UAPI socket lives."""
        return self._run_dir / f"{check_name(name)}.sock"

    def log_path(self, name: str) -> Path | None:
        """Where the interface's wireguard-go writes its output, if anywhere."""
        return None if self._log_dir is None else self._log_dir / f"{check_name(name)}.log"

    async def create(self, name: str, private_key: WgPrivateKey, listen_port: int) -> None:
        """Start wireguard-go for name and give it its key and port."""
        if await self.listener_pid(name) is not None:
            raise WireGuardError(f"{name} already exists (its UAPI socket answers); not touched")
        pid = self._spawn(name)
        pidfd = process.open_pidfd(pid)  # our unreaped child: it cannot be gone yet
        try:
            await self._start(name, pid, private_key, listen_port)
        except BaseException:
            if pidfd is not None:
                await process.terminate(pidfd, self._stop_timeout)
            process.reap(pid)
            raise
        finally:
            if pidfd is not None:
                os.close(pidfd)
        log.info("wg.created", interface=name, backend=self.kind, pid=pid)

    async def _start(self, name: str, pid: int, private_key: WgPrivateKey, port: int) -> None:
        await self._wait_ready(name, pid)
        first: list[WgChange] = [SetPrivateKey(private_key)]
        first += [SetListenPort(port)] if port else []
        await self._set(name, tuple(first))

    async def delete(self, name: str) -> bool:
        """Stop the interface's wireguard-go; False when none was running."""
        pid = await self.listener_pid(name)
        if pid is None:
            self._unlink_stale(name)
            return False
        owner = process.command_name(pid)
        if owner != PROGRAM:
            raise WireGuardError(
                f"{self.socket_path(name)} belongs to pid {pid} ({owner}), not {PROGRAM}; "
                "not stopping it"
            )
        await process.stop(pid, self._stop_timeout)
        self._unlink_stale(name)
        log.info("wg.deleted", interface=name, backend=self.kind, pid=pid)
        return True

    async def exists(self, name: str) -> bool:
        """Whether a wireguard-go answers on the interface's socket."""
        return await self.listener_pid(name) is not None

    async def names(self) -> list[str]:
        """The interfaces whose sockets answer, sorted."""
        try:
            stems = sorted(p.stem for p in self._run_dir.glob("*.sock"))
        except OSError as e:
            raise _os_error(f"listing {self._run_dir}", e) from e
        found = []
        for stem in stems:
            with contextlib.suppress(ForeignInterface):
                if await self.listener_pid(stem) is not None:
                    found.append(stem)
        return found

    async def get(self, name: str) -> InterfaceState:
        """The interface's WireGuard state plus its link's addresses and up flag."""
        state = uapi.parse_get(name, await self._exchange(name, uapi.GET_REQUEST))
        link = await self._links.read(name)
        if link is None:
            raise WireGuardError(f"{name}: wireguard-go answers but its TUN link is missing")
        return replace(state, addresses=link.addresses, up=link.up)

    async def apply(self, name: str, changes: tuple[Change, ...]) -> None:
        """Apply the WireGuard part in one UAPI `set`, then the link part."""
        wg = wg_changes(changes)
        if wg:
            await self._set(name, wg)
        await self._links.apply(name, link_changes(changes))

    async def listener_pid(self, name: str) -> int | None:
        """The pid owning the interface's UAPI socket; None when nothing answers there.

        ForeignInterface when that process serves another network namespace.
        """
        sock = await self._connect(name)
        if sock is None:
            return None
        with sock:
            return _owner(name, sock)

    def _spawn(self, name: str) -> int:
        binary = shutil.which(self._binary)
        if binary is None:
            raise WireGuardUnavailable(
                f"{self._binary} is not installed; `apt-get install wireguard-go`"
            )
        env = {**os.environ, _ENV_USERSPACE: "1", "LOG_LEVEL": self._log_level}
        log_path = self.log_path(name)
        if log_path is not None:
            with contextlib.suppress(OSError):
                log_path.parent.mkdir(parents=True, exist_ok=True)
        return process.spawn([binary, "-f", name], env, log_path)

    async def _wait_ready(self, name: str, pid: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        while loop.time() < deadline:
            code = process.reap(pid)
            if code is not None:
                raise WireGuardError(
                    f"{PROGRAM} exited with status {code} while starting {name}: "
                    f"{process.log_tail(self.log_path(name))}"
                )
            if await self.listener_pid(name) == pid:
                return
            await asyncio.sleep(_POLL_S)
        raise WireGuardError(
            f"{PROGRAM} did not open {self.socket_path(name)} within {self._start_timeout:.0f} s"
        )

    async def _set(self, name: str, changes: tuple[WgChange, ...]) -> None:
        answer = await self._exchange(name, uapi.build_set(changes))
        try:
            uapi.check_set_answer(name, answer)
        except UapiError as e:
            # Say what was asked, never with what key: describe() is log-safe.
            raise UapiError(f"{e.message} (asked: {'; '.join(describe_all(changes))})") from None

    async def _connect(self, name: str) -> socket.socket | None:
        path = self.socket_path(name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(self._io_timeout):
                await asyncio.get_running_loop().sock_connect(sock, str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None  # no socket, or a stale one whose owner died
        except TimeoutError:
            sock.close()
            raise WireGuardError(f"{path} did not accept within {self._io_timeout:.0f} s") from None
        except OSError as e:
            sock.close()
            raise _os_error(f"connecting to {path}", e) from e
        return sock

    async def _exchange(self, name: str, request: bytes) -> bytes:
        sock = await self._connect(name)
        if sock is None:
            raise InterfaceNotFound(f"{name}: no {PROGRAM} answers on {self.socket_path(name)}")
        loop = asyncio.get_running_loop()
        with sock:
            _owner(name, sock)  # never configure another namespace's interface
            try:
                async with asyncio.timeout(self._io_timeout):
                    await loop.sock_sendall(sock, request)
                    return await _read_answer(loop, sock)
            except TimeoutError:
                raise WireGuardError(
                    f"{name}: no UAPI answer within {self._io_timeout:.0f} s"
                ) from None
            except OSError as e:
                raise _os_error(f"{name}: UAPI exchange", e) from e

    def _unlink_stale(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path(name).unlink()


def _owner(name: str, sock: socket.socket) -> int:
    """The pid at the other end of a UAPI connection, checked to be in our network namespace.

    /var/run/wireguard is shared by every network namespace in one mount namespace
    (PLATFORM.md): a socket of the same name may belong to another node's interface.
    """
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid: int = _PEERCRED.unpack(creds)[0]
    theirs, ours = _netns(Path(f"/proc/{pid}/ns/net")), _netns(Path("/proc/self/ns/net"))
    if theirs is not None and ours is not None and theirs != ours:
        raise ForeignInterface(
            f"{name}: the {PROGRAM} answering its UAPI socket (pid {pid}) serves another "
            "network namespace; not touching it. Give interfaces machine-unique names or run "
            "each node in its own mount namespace with a private /run"
        )
    return pid


def _netns(path: Path) -> tuple[int, int] | None:
    # Unreadable (process gone, or no ptrace access to it): the check is skipped.
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


async def _read_answer(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """Read one answer, up to and including its blank line, within uapi.MAX_RESPONSE."""
    buf = bytearray()
    while True:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise UapiError("wireguard-go closed the connection before answering in full")
        start = max(0, len(buf) - 1)
        buf += chunk
        end = buf.find(uapi.TERMINATOR, start)
        if end >= 0:
            return bytes(buf[: end + len(uapi.TERMINATOR)])
        if len(buf) > uapi.MAX_RESPONSE:
            raise UapiError(f"UAPI answer larger than {uapi.MAX_RESPONSE} bytes")

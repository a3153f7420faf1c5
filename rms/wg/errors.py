"""WireGuard errors: one typed family, translated once at each backend's boundary.

Every message is built by us from safe parts (interface names, errno names, abbreviated
public keys). As a second line of defence the constructor blanks anything shaped like a
whole WireGuard key, in hex (the UAPI form) or base64 (the `wg` form), so a private key can
never reach a log line or a person through an error, even if some lower layer echoed one.
"""

from __future__ import annotations

import errno
import os
import re

# A whole 32-byte key: 64 hex digits, or 43 base64 characters and one "=" of padding.
_KEY_SHAPES = re.compile(
    r"(?<![0-9A-Za-z+/])([0-9a-fA-F]{64}|[A-Za-z0-9+/]{43}=)(?![0-9A-Za-z+/=])"
)
KEY_MASK = "[key]"


def scrub(text: str) -> str:
    """Replace everything in text that looks like a whole WireGuard key."""
    return _KEY_SHAPES.sub(KEY_MASK, text)


class WireGuardError(Exception):
    """A WireGuard operation failed; the message says what and what to do next."""

    def __init__(self, message: str) -> None:
        super().__init__(scrub(message))

    @property
    def message(self) -> str:
        """The scrubbed message."""
        return str(self.args[0])


class InterfaceNotFound(WireGuardError):
    """The named WireGuard interface does not exist (or its control socket is gone)."""


class ForeignInterface(WireGuardError):
    """The interface's control socket belongs to another network namespace (PLATFORM.md)."""


class WireGuardUnavailable(WireGuardError):
    """This backend cannot run here: no kernel module, no wireguard-go binary, no rights."""


class UapiError(WireGuardError):
    """The UAPI peer answered something malformed, oversized, or an error number."""


def errno_text(code: int) -> str:
    """`EADDRINUSE (Address already in use)` for an errno value of either sign."""
    code = abs(code)
    name = errno.errorcode.get(code, f"errno {code}")
    return f"{name} ({os.strerror(code)})"


def os_error(action: str, err: OSError) -> WireGuardError:
    """Translate an OSError into a WireGuardError that names the action and the errno."""
    if err.errno is None:
        return WireGuardError(f"{action} failed: {type(err).__name__}")
    if err.errno in (errno.EPERM, errno.EACCES):
        return WireGuardUnavailable(
            f"{action} failed: {errno_text(err.errno)}; run as root or with CAP_NET_ADMIN"
        )
    return WireGuardError(f"{action} failed: {errno_text(err.errno)}")

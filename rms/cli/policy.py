"""`rms policy keygen|new|sign|show|verify`: make, countersign and check policy documents.

Signing happens where the policy keys live (offline machines): `new` writes an unsigned
document, each key holder runs `sign` on a copy, and `verify` checks the result the way every
node will before it is published (docs/entitlement.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rms import policydoc
from rms.config import ConfigError, load_config
from rms.identity import IdentityError, NodeIdentity, format_key_file, load, random_seed
from rms.ledger.canonical import DocumentError
from rms.policy import DEFAULT

MAX_READ = policydoc.MAX_DOCUMENT_BYTES + 1


def register(sub: Any) -> None:
    """Add `rms policy` to the command line."""
    parser: argparse.ArgumentParser = sub.add_parser("policy", help="signed policy documents")
    cmds = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    p = cmds.add_parser("keygen", help="create a policy key file (keep it offline)")
    p.add_argument("key", type=Path, help="key file to create (mode 0600)")
    p.set_defaults(handler=keygen)
    p = cmds.add_parser("new", help="write an unsigned document")
    p.add_argument("out", type=Path)
    p.add_argument("--version", type=int, required=True, help="document version (>= 1)")
    p.add_argument("--from", dest="base", type=Path, help="start from this document's policy")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument(
        "--expires", metavar="UTC", help="nodes refuse it after, e.g. 2027-12-31T00:00:00Z"
    )
    p.set_defaults(handler=new)
    p = cmds.add_parser("sign", help="add a signature to a document, in place")
    p.add_argument("document", type=Path)
    p.add_argument("--key", type=Path, required=True, help="policy key file")
    p.set_defaults(handler=sign)
    for name, handler in (("show", show), ("verify", verify)):
        p = cmds.add_parser(name, help=f"{name} a document")
        p.add_argument("document", type=Path)
        p.add_argument("--trust", action="append", default=[], metavar="HEX", help="policy key")
        p.add_argument("--threshold", type=int, help="signatures required (default: config)")
        p.add_argument("--min-version", type=int, default=0)
        p.add_argument("--config", type=Path, help="TOML config file (trusted keys)")
        p.set_defaults(handler=handler)


def _fail(message: str, code: int = 1) -> int:
    print(f"rms policy: {message}", file=sys.stderr)
    return code


def keygen(args: argparse.Namespace) -> int:
    """Create a key file and print its public key; refuses to overwrite."""
    seed = random_seed()
    try:
        fd = os.open(args.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return _fail(f"cannot create {args.key}: {e.strerror}", 2)
    with os.fdopen(fd, "wb") as f:
        f.write(format_key_file(seed))
    print(NodeIdentity.from_seed(seed).public_key.hex())
    return 0


def new(args: argparse.Namespace) -> int:
    """Write an unsigned document from the defaults (or a base document) and overrides."""
    fields = policydoc.policy_fields(DEFAULT)
    try:
        if args.base is not None:
            fields.update(policydoc.parse(_read(args.base))[0]["policy"])
        fields.update(_overrides(args.set))
        policy = policydoc.policy_from_fields(fields)
        body = policydoc.make_body(policy, args.version, _utc_now(), args.expires)
    except (OSError, DocumentError) as e:
        return _fail(str(e), 2)
    _write(args.out, policydoc.encode({**body, "signatures": []}))
    print(f"rms policy: wrote unsigned version {args.version} to {args.out}")
    return 0


def _overrides(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise policydoc.PolicyDocError(f"--set {pair!r}: expected FIELD=VALUE")
        try:
            out[name.strip()] = json.loads(value)
        except ValueError:
            raise policydoc.PolicyDocError(f"--set {pair!r}: the value is not a number") from None
    return out


def sign(args: argparse.Namespace) -> int:
    """Add the key's signature to the document (its own other signatures are kept)."""
    try:
        identity = load(args.key)
        data = _read(args.document)
        body, _ = policydoc.parse(data)
        doc = json.loads(data)
    except IdentityError as e:
        return _fail(str(e), 2)
    except (OSError, DocumentError) as e:
        return _fail(f"{args.document}: {e}", 2)
    signed = policydoc.add_signature({**doc, **body}, identity)
    _write(args.document, policydoc.encode(signed))
    print(f"rms policy: signed version {body['version']} with {identity.public_key.hex()}")
    return 0


def show(args: argparse.Namespace) -> int:
    """Print the document; with trust (flags or config) also whether it verifies."""
    try:
        body, pairs = policydoc.parse(_read(args.document))
    except (OSError, DocumentError) as e:
        return _fail(f"{args.document}: {e}")
    out = {**body, "signatures": [k.hex() for k, _ in pairs]}
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


def verify(args: argparse.Namespace) -> int:
    """Exit 0 when the document verifies against the trusted keys, 1 when it is refused."""
    try:
        trust = _trust(args)
    except (ConfigError, ValueError) as e:
        return _fail(str(e), 2)
    try:
        doc = policydoc.check(_read(args.document), trust, args.min_version, time.time())
    except (OSError, DocumentError) as e:
        return _fail(f"{args.document} refused: {e}")
    print(json.dumps(policydoc.describe(doc), indent=2, sort_keys=True))
    return 0


def _trust(args: argparse.Namespace) -> policydoc.PolicyTrust:
    if args.trust:
        return policydoc.PolicyTrust.from_hex(args.trust, args.threshold or len(args.trust))
    section = load_config(args.config).policy
    if not section.keys:
        raise ValueError("no trusted policy keys: give --trust HEX or set [policy] keys")
    return policydoc.PolicyTrust.from_hex(section.keys, args.threshold or section.threshold)


def _read(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(MAX_READ)


def _write(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(data)
    temp.replace(path)


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

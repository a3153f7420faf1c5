"""`rms-repo` (also `python -m rms.update.repo`): keep the component library's TUF repository.

    rms-repo keygen KEYFILE                            a key pair: KEYFILE (0600), KEYFILE.pub
    rms-repo init REPO --root PUB ... --targets PUB ... --snapshot PUB --timestamp PUB
    rms-repo add REPO FILE [--name NAME] [--meta K=V]   stage a target (clears signatures)
    rms-repo remove REPO NAME
    rms-repo sign REPO root|targets --key KEYFILE       sign or countersign what is staged
    rms-repo rotate REPO ROLE [--add PUB] [--revoke KEYID] [--threshold N]
    rms-repo renew REPO root|targets                    stage the next version, fresh expiry
    rms-repo publish REPO --snapshot-key K --timestamp-key K   (daily: new snapshot, timestamp)
    rms-repo timestamp REPO --timestamp-key K           re-sign the timestamp only
    rms-repo status REPO
    rms-repo check-root ROOT.json                       fit to ship as nodes' trust anchor?

Exit codes: 0 done, 1 refused (the message says why and what to do), 2 misuse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from rms.update.roles import MAX_ROOT_BYTES, RepoError, RoleKeys, check_trusted_root
from rms.update.store import generate_key, load_public_key, public_path, read_capped
from rms.update.tool import RepoTool

EXIT_OK, EXIT_REFUSED, EXIT_MISUSE = 0, 1, 2
MAX_TARGET_BYTES = 1 << 30  # a package or image; the client caps by the signed length


def _now() -> datetime:
    return datetime.now(UTC)


def _keygen(args: argparse.Namespace) -> str:
    key = generate_key(args.keyfile)
    public = public_path(args.keyfile)
    return f"key {key.keyid}\nprivate: {args.keyfile} (keep it offline)\npublic: {public}"


def _init(args: argparse.Namespace) -> str:
    def role(files: list[Path], threshold: int) -> RoleKeys:
        return RoleKeys(tuple(load_public_key(f) for f in files), threshold)

    keys = {
        "root": role(args.root, args.root_threshold),
        "targets": role(args.targets, args.targets_threshold),
        "snapshot": role(args.snapshot, 1),
        "timestamp": role(args.timestamp, 1),
    }
    RepoTool(args.repo).init(keys, _now())
    return "staged root v1 and targets v1; each root and targets key holder runs `sign`"


def _add(args: argparse.Namespace) -> str:
    custom = dict(_pair(item) for item in args.meta)
    data = read_capped(args.file, MAX_TARGET_BYTES, "target")
    name = args.name or args.file.name
    sha256 = RepoTool(args.repo).add(name, data, custom, _now())
    return f"staged {name} ({len(data)} bytes, sha256 {sha256}); targets need signing again"


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise RepoError(f"--meta {item!r}: write KEY=VALUE")
    return key, value


def _remove(args: argparse.Namespace) -> str:
    RepoTool(args.repo).remove(args.name, _now())
    return f"staged targets without {args.name}; they need signing again"


def _sign(args: argparse.Namespace) -> str:
    return RepoTool(args.repo).sign(args.role, args.key)


def _rotate(args: argparse.Namespace) -> str:
    add = tuple(load_public_key(f) for f in args.add)
    version = RepoTool(args.repo).rotate(args.role, add, tuple(args.revoke), args.threshold, _now())
    return f"staged root v{version}; old and new root key holders each run `sign root`"


def _renew(args: argparse.Namespace) -> str:
    version = RepoTool(args.repo).renew(args.role, _now())
    return f"staged {args.role} v{version}; its key holders sign it, then `publish`"


def _publish(args: argparse.Namespace) -> str:
    return "published " + RepoTool(args.repo).publish(args.snapshot_key, args.timestamp_key, _now())


def _timestamp(args: argparse.Namespace) -> str:
    return "published " + RepoTool(args.repo).timestamp(args.timestamp_key, _now())


def _status(args: argparse.Namespace) -> str:
    return "\n".join(RepoTool(args.repo).status()) or "empty repository"


def _check_root(args: argparse.Namespace) -> str:
    data = read_capped(args.file, MAX_ROOT_BYTES, "root.json")
    return f"{args.file}: " + check_trusted_root(data, _now())


def build_parser() -> argparse.ArgumentParser:
    """The `rms-repo` command line."""
    parser = argparse.ArgumentParser(prog="rms-repo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], str], text: str) -> Sub:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(handler=handler)
        if name not in ("keygen", "check-root"):
            p.add_argument("repo", type=Path, help="the repository directory")
        return p

    command("keygen", _keygen, "make an ed25519 key pair").add_argument("keyfile", type=Path)
    p = command("init", _init, "stage root v1 and an empty targets v1")
    p.add_argument("--root", type=Path, action="append", required=True, help="public key file")
    p.add_argument("--root-threshold", type=int, default=2)
    p.add_argument("--targets", type=Path, action="append", required=True)
    p.add_argument("--targets-threshold", type=int, default=2)
    p.add_argument("--snapshot", type=Path, action="append", required=True)
    p.add_argument("--timestamp", type=Path, action="append", required=True)
    p = command("add", _add, "stage a target: a package or the policy document")
    p.add_argument("file", type=Path)
    p.add_argument("--name", help="target name (default: the file name)")
    p.add_argument("--meta", action="append", default=[], help="KEY=VALUE, signed with it")
    command("remove", _remove, "stage targets without one").add_argument("name")
    p = command("sign", _sign, "sign or countersign the staged root or targets")
    p.add_argument("role", choices=("root", "targets"))
    p.add_argument("--key", type=Path, required=True, help="private key file")
    p = command("rotate", _rotate, "stage a root that changes one role's keys")
    p.add_argument("role", choices=("root", "targets", "snapshot", "timestamp"))
    p.add_argument("--add", type=Path, action="append", default=[], help="public key file")
    p.add_argument("--revoke", action="append", default=[], help="key id")
    p.add_argument("--threshold", type=int)
    p = command("renew", _renew, "stage root or targets again before they expire")
    p.add_argument("role", choices=("root", "targets"))
    p = command("publish", _publish, "publish what is signed, then snapshot and timestamp")
    p.add_argument("--snapshot-key", type=Path, required=True)
    p.add_argument("--timestamp-key", type=Path, required=True)
    p = command("timestamp", _timestamp, "re-sign the timestamp")
    p.add_argument("--timestamp-key", type=Path, required=True)
    command("status", _status, "versions, expiry and signatures of every role")
    p = command("check-root", _check_root, "check a root.json to ship as the nodes' trust anchor")
    p.add_argument("file", type=Path, help="a root.json, e.g. REPO/metadata/1.root.json")
    return parser


Sub = argparse.ArgumentParser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `rms-repo`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        return EXIT_MISUSE
    try:
        print(handler(args))
    except RepoError as exc:
        print(f"rms-repo: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        print(f"rms-repo: {exc}; nothing more was written", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

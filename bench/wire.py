"""Wire envelope throughput against raw PyNaCl and msgpack, measured in the same run.

    .venv/bin/python bench/wire.py [--iterations N] [--rounds R]

The baseline is the least any signed msgpack message costs: `msgpack.packb(body)` then
`SigningKey.sign()` to encode, `VerifyKey.verify()` then `msgpack.unpackb()` to decode.
Ours adds the envelope, the body schema, a fresh nonce, the timestamp window and the replay
cache. ed25519 dominates both, so the ratio ours/baseline should stay >= 0.7. Rounds are
interleaved and the best round of each side counts, which filters out a noisy neighbour.
The last line of output is one JSON object; the exit code never depends on the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import msgpack

from rms.identity import NodeIdentity
from rms.wire import Accepted, Decoder, DecoderConfig, encode
from rms.wire.messages.node import PING, Ping

GOAL = 0.7
NOW = 1_700_000_000.0
IDENTITY = NodeIdentity.from_seed(b"bench-wire-seed-0123456789abcdef")
BODY = Ping(b"0123456789abcdef").body()


@dataclass(frozen=True)
class Figures:
    """Messages per second of each side, and the ratios."""

    encode_per_s: float
    baseline_sign_per_s: float
    encode_ratio: float
    decode_per_s: float
    baseline_verify_per_s: float
    decode_ratio: float


def timed(run: Callable[[], int]) -> float:
    """Operations per second of `run`, which returns how many operations it did."""
    gc.disable()  # a collection landing in one side's round would skew the ratio
    try:
        start = time.perf_counter()
        done = run()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return done / max(elapsed, 1e-9)


def ours_encode(n: int) -> int:
    """Encode and sign n pings."""
    for _ in range(n):
        encode(IDENTITY, PING, BODY, NOW)
    return n


def baseline_sign(n: int) -> int:
    """Pack and sign the same body n times with plain msgpack and PyNaCl."""
    key = IDENTITY.signing_key
    for _ in range(n):
        key.sign(msgpack.packb(BODY))
    return n


def ours_decode(datagrams: Sequence[bytes]) -> int:
    """Decode and verify distinct datagrams with a fresh decoder (an empty replay cache)."""
    decoder = Decoder(config=DecoderConfig(replay_capacity=max(len(datagrams), 1)))
    for datagram in datagrams:
        decoder.decode(datagram, NOW)
    return len(datagrams)


def baseline_verify(signed: bytes, n: int) -> int:
    """Verify and unpack one signed body n times with plain PyNaCl and msgpack."""
    key = IDENTITY.verify_key
    for _ in range(n):
        msgpack.unpackb(key.verify(signed))
    return n


def measure(iterations: int, rounds: int) -> Figures:
    """Best-of-`rounds` rates of each side, rounds interleaved."""
    datagrams = [encode(IDENTITY, PING, BODY, NOW) for _ in range(iterations)]
    if not isinstance(Decoder().decode(datagrams[0], NOW), Accepted):
        raise SystemExit("bench/wire.py: the benchmark datagram does not decode")
    signed = IDENTITY.signing_key.sign(msgpack.packb(BODY))
    best = {"enc": 0.0, "sign": 0.0, "dec": 0.0, "verify": 0.0}
    for _ in range(rounds):
        best["enc"] = max(best["enc"], timed(lambda: ours_encode(iterations)))
        best["sign"] = max(best["sign"], timed(lambda: baseline_sign(iterations)))
        best["dec"] = max(best["dec"], timed(lambda: ours_decode(datagrams)))
        best["verify"] = max(best["verify"], timed(lambda: baseline_verify(signed, iterations)))
    return Figures(
        encode_per_s=round(best["enc"]),
        baseline_sign_per_s=round(best["sign"]),
        encode_ratio=round(best["enc"] / best["sign"], 3),
        decode_per_s=round(best["dec"]),
        baseline_verify_per_s=round(best["verify"]),
        decode_ratio=round(best["dec"] / best["verify"], 3),
    )


def table(figures: Figures, iterations: int, rounds: int) -> str:
    """The human-readable report."""

    def row(name: str, ours: float, base: float, ratio: float) -> str:
        verdict = "meets" if ratio >= GOAL else "BELOW"
        return f"{name:<18}{ours:>12,.0f}{base:>14,.0f}{ratio:>8.2f}   {verdict} goal {GOAL}"

    return "\n".join(
        [
            f"wire bench: node.ping (16-byte request id), {iterations} messages, "
            f"best of {rounds} rounds",
            f"{'':<18}{'envelope/s':>12}{'baseline/s':>14}{'ratio':>8}",
            row("encode + sign", figures.encode_per_s, figures.baseline_sign_per_s,
                figures.encode_ratio),
            row("decode + verify", figures.decode_per_s, figures.baseline_verify_per_s,
                figures.decode_ratio),
        ]
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, then one JSON line; always exit 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else "")
    parser.add_argument("--iterations", type=int, default=10000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per side")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.rounds < 1:
        parser.error("--iterations and --rounds must be at least 1")
    figures = measure(args.iterations, args.rounds)
    print(table(figures, args.iterations, args.rounds))
    print(json.dumps({"bench": "wire", **asdict(figures)}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

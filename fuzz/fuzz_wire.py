"""Fuzz the wire decoder: whatever the bytes, `Decoder.decode` returns, never raises.

    .venv/bin/python fuzz/fuzz_wire.py -runs=100000 [libFuzzer flags] [CORPUS_DIR ...]

Random bytes alone would almost never get past msgpack and the signature, so the first
input byte picks one of three shapes (fuzz/README.md):

0. the raw bytes, as a datagram;
1. a valid signed `node.ping` with bytes overwritten, inserted or cut where the input says;
2. an envelope built from the input (version, type, timestamp, nonce and a body of any
   msgpack shape) and *validly signed*, so the body checks and the replay path run too;
   it is decoded twice and the second time must be refused.

Any exception, or an invariant broken, is a crash and ends the run with a non-zero exit.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris
from fuzzing import mutated

with atheris.instrument_imports():
    import msgpack

    from rms.identity import NodeIdentity
    from rms.wire import (
        Accepted,
        Decoder,
        DecoderConfig,
        Rejected,
        RejectReason,
        default_registry,
        encode,
        sign_payload,
    )
    from rms.wire.messages.node import PING, Ping

IDENTITY = NodeIdentity.from_seed(b"fuzz" * 8)
NOW = 1_700_000_000.0
NOW_MS = 1_700_000_000_000
REGISTRY = default_registry()
TYPE_NAMES = [t.name for t in REGISTRY]
# Top-level field names of every registered schema: new families are fuzzed with no edit.
FIELD_NAMES = sorted({name for t in REGISTRY for name in (*t.body.required, *t.body.optional)})
VALID = encode(IDENTITY, PING, Ping(b"fuzz-request").body(), NOW, nonce=bytes(16))
# A small replay cache so that eviction and the floor are exercised within one input.
CONFIG = DecoderConfig(replay_capacity=2)
MAX_LEAVES = 64


LEAVES: list[Callable[[atheris.FuzzedDataProvider], object]] = [
    lambda fdp: None,
    lambda fdp: fdp.ConsumeBool(),
    lambda fdp: fdp.ConsumeIntInRange(-(2**63), 2**64 - 1),
    lambda fdp: fdp.ConsumeRegularFloat(),
    lambda fdp: fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24)),
    lambda fdp: fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24)),
    lambda fdp: fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24)),
]


def value(fdp: atheris.FuzzedDataProvider, depth: int, budget: list[int]) -> object:
    """Any msgpack value, shaped by the input; `budget` caps the number of leaves."""
    budget[0] -= 1
    if depth < 20 and budget[0] > 0 and fdp.ConsumeIntInRange(0, 3) == 0:
        count = fdp.ConsumeIntInRange(0, 4)
        if fdp.ConsumeBool():
            return [value(fdp, depth + 1, budget) for _ in range(count)]
        return {key(fdp): value(fdp, depth + 1, budget) for _ in range(count)}
    return fdp.PickValueInList(LEAVES)(fdp)


def key(fdp: atheris.FuzzedDataProvider) -> str:
    """A map key: mostly a field name a schema knows."""
    if fdp.ConsumeBool():
        return str(fdp.PickValueInList(FIELD_NAMES))
    return str(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12)))


def signed_envelope(fdp: atheris.FuzzedDataProvider) -> bytes:
    """A validly signed envelope whose fields come from the input."""
    version = fdp.PickValueInList([1, 1, 1, 0, 2, -1])
    name = fdp.PickValueInList([*TYPE_NAMES, "node", "", "x.y"])
    timestamp_ms = NOW_MS + fdp.ConsumeIntInRange(-200_000, 200_000)
    nonce = fdp.ConsumeBytes(fdp.PickValueInList([16, 16, 16, 15, 17]))
    body = value(fdp, 2, [MAX_LEAVES])
    fields = [version, name, IDENTITY.public_key, timestamp_ms, nonce, body]
    if fdp.ConsumeIntInRange(0, 7) == 0:  # now and then, a header of the wrong arity
        fields = fields[: fdp.ConsumeIntInRange(0, 5)]
    return sign_payload(IDENTITY, msgpack.packb(fields))


def check_signed(decoder: Decoder, datagram: bytes) -> None:
    """Decode twice: the second must be refused, as a replay if the first was accepted."""
    first = decoder.decode(datagram, NOW)
    again = decoder.decode(datagram, NOW)
    if not isinstance(again, Rejected):
        raise RuntimeError(f"a datagram was accepted twice: {datagram.hex()}")
    if isinstance(first, Accepted) and again.reason is not RejectReason.REPLAYED:
        raise RuntimeError(f"replay refused as {again.reason}: {datagram.hex()}")


def test_one_input(data: bytes) -> None:
    """libFuzzer's entry point: one input, one or two decodes."""
    fdp = atheris.FuzzedDataProvider(data)
    decoder = Decoder(REGISTRY, CONFIG)
    shape = fdp.ConsumeIntInRange(0, 2)
    if shape == 2:
        check_signed(decoder, signed_envelope(fdp))
        return
    datagram = mutated(fdp, VALID) if shape == 1 else fdp.ConsumeBytes(len(data))
    result = decoder.decode(datagram, NOW)
    if isinstance(result, Accepted) and datagram != VALID:
        raise RuntimeError(f"a mutated datagram was accepted: {datagram.hex()}")


def main() -> None:
    """Run libFuzzer over `test_one_input` with the command line's flags."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

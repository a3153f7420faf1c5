"""The static crypto puzzle on node keys (S/Kademlia, Baumgart & Mies 2007, section 4.1).

A node key is valid only if SHA-256(node_id) starts with `bits` zero bits, where node_id is
SHA-256 of the ed25519 public key. Making a key costs about 2**bits key generations, so an
attacker cannot mint thousands of identities, nor choose one close to a target key, cheaply;
checking it costs one hash. `bits` is `Policy.dht_puzzle_bits`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from nacl import bindings

from rms.identity import node_id_of

__all__ = ["grind_seed", "leading_zero_bits", "satisfies"]

SEED_SIZE = 32
MAX_BITS = 32  # beyond this a key costs hours to make: refuse such a policy


def leading_zero_bits(data: bytes) -> int:
    """How many zero bits `data` starts with."""
    value = int.from_bytes(data, "big")
    return len(data) * 8 - value.bit_length()


def satisfies(public_key: bytes, bits: int) -> bool:
    """Whether this ed25519 public key solves the puzzle of difficulty `bits`."""
    if bits <= 0:
        return True
    digest = hashlib.sha256(node_id_of(public_key)).digest()
    return leading_zero_bits(digest) >= bits


def grind_seed(bits: int, rng_bytes: Callable[[int], bytes]) -> bytes:
    """A 32-byte ed25519 seed whose key solves the puzzle; `rng_bytes(n)` gives randomness."""
    if not 0 <= bits <= MAX_BITS:
        raise ValueError(f"puzzle difficulty must lie in [0, {MAX_BITS}], got {bits}")
    while True:
        seed = rng_bytes(SEED_SIZE)
        public, _ = bindings.crypto_sign_seed_keypair(seed)
        if satisfies(public, bits):
            return seed

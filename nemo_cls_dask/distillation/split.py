"""The held-out split of a distillation: a seeded hash of each row's text.

A row is held out when the hash of ``(seed, text)`` falls below ``fraction``. The hash is
BLAKE2b, not Python's salted ``hash``, so the split is the same in every process and every
run, whatever the partitioning or row order; identical texts always fall on the same side
(a duplicate cannot leak from training into the held-out rows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from ..errors import InputError

_SCALE = float(1 << 64)


def unit_hash(text: str, seed: int, purpose: str = "heldout") -> float:
    """A number in ``[0, 1)`` that depends only on ``purpose``, ``seed`` and ``text``."""
    key = f"{purpose}:{int(seed)}".encode()
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=key[:64]).digest()
    return int.from_bytes(digest, "big") / _SCALE


def unit_hashes(texts: Iterable[str], seed: int, purpose: str = "heldout") -> np.ndarray:
    """:func:`unit_hash` of each text, as a float64 array."""
    return np.fromiter((unit_hash(text, seed, purpose) for text in texts), dtype=np.float64)


def heldout_mask(texts: Iterable[str], fraction: float, seed: int) -> np.ndarray:
    """True for the rows held out from training (about ``fraction`` of them)."""
    check_fraction("heldout_fraction", fraction)
    return unit_hashes(texts, seed) < fraction


def check_fraction(name: str, value: object) -> None:
    """Raise unless ``value`` is a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise InputError(f"{name} must be a number strictly between 0 and 1, got {value!r}.")

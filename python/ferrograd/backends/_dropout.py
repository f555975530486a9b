"""The dropout family's shared pieces: argument checks, the drop threshold, and
Philox4x32-10 written with numpy (uint64 products give mulhi/mullo), the reference the
Rust and CUDA versions are tested against (and Random123's known answers)."""

from __future__ import annotations

import math
import numbers

import numpy as np

_M0, _M1 = 0xD2511F53, 0xCD9E8D57      # Philox4x32 multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85      # Weyl key increments
_MASK32 = 0xFFFFFFFF
ONE_24 = 1 << 24


def check_p(p, name: str = "p") -> float:
    if not isinstance(p, numbers.Real) or isinstance(p, bool):
        raise TypeError(f"{name}: expected a probability (a float in [0, 1]), got {p!r}")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {p!r}")
    return float(p)


def check_stream(seed: int, offset: int) -> None:
    for name, v in (("seed", seed), ("offset", offset)):
        if not isinstance(v, numbers.Integral) or not 0 <= v < 2**64:
            raise ValueError(f"{name}: expected an integer in [0, 2^64), got {v!r}")


def threshold(p: float) -> int:
    """Elements whose ``word >> 8`` is below ceil(p * 2^24) are dropped (u < p)."""
    return min(math.ceil(float(p) * ONE_24), ONE_24)


def scale(p: float) -> float:
    """The kept elements' factor 1 / (1 - p); 0 for p = 1 (everything dropped)."""
    return 1.0 / (1.0 - p) if p < 1.0 else 0.0


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int):
    """Ten Philox rounds on uint64 arrays holding 32-bit counter words; returns the four
    output words as uint32 arrays."""
    m32 = np.uint64(_MASK32)
    c = [np.asarray(v, dtype=np.uint64) for v in (c0, c1, c2, c3)]
    for r in range(10):
        if r:
            k0, k1 = (k0 + _W0) & _MASK32, (k1 + _W1) & _MASK32
        p0 = np.uint64(_M0) * c[0]   # exact: a 32 x 32-bit product fits in 64 bits
        p1 = np.uint64(_M1) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0), p1 & m32,
             (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1), p0 & m32]
    return [v.astype(np.uint32) for v in c]


def philox_words(seed: int, offset: int, first_block: int, n_blocks: int) -> np.ndarray:
    """(n_blocks, 4) uint32 words of blocks first_block... of the stream (seed, offset)."""
    check_stream(seed, offset)
    b = (np.arange(n_blocks, dtype=np.uint64) + np.uint64(first_block % 2**64))  # wraps mod 2^64
    words = philox4x32_10(b & np.uint64(_MASK32), b >> np.uint64(32),
                          np.uint64(offset & _MASK32), np.uint64(offset >> 32),
                          seed & _MASK32, seed >> 32)
    return np.stack(words, axis=-1)


def stream(n: int, seed: int, offset: int) -> np.ndarray:
    """The n words of a call: element i gets word i % 4 of block i // 4."""
    return philox_words(seed, offset, 0, (n + 3) // 4).reshape(-1)[:n]


def check_block_shape(shape, block_size: int) -> None:
    if len(shape) != 4:
        raise ValueError(f"input: expected a 4-D shape (N, C, H, W), got {tuple(shape)}")
    if not isinstance(block_size, numbers.Integral) or isinstance(block_size, bool) \
            or not 1 <= block_size <= min(shape[2], shape[3]):
        raise ValueError(f"block_size: expected an int in [1, min(H, W) = "
                         f"{min(shape[2], shape[3])}], got {block_size!r}")

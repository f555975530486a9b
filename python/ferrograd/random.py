"""ferrograd's one random stream, seeded by ``fg.manual_seed`` (PyTorch's ``torch.random``).

Everything in ferrograd that draws goes through this module; nothing else keeps random
state. ``manual_seed(seed)`` resets both of its generators:

* the **host generator** (numpy's PCG64 seeded with ``seed``) draws ``fg.randn``,
  ``fg.rand`` and parameter initialisation on the host, so a seed gives the same weights
  on every backend;
* the **Philox4x32-10 counter stream** behind every random kernel (dropout, DropConnect,
  DropBlock, the dropout between recurrent layers and inside attention): its key is
  ``seed mod 2**64`` and each random call takes the next ``offset``. Element i of that
  call reads counter (i // 4, offset) (``backends/base.py``), so a mask depends only on
  (seed, offset, i): the same on every backend, whatever the thread count or launch shape,
  and a recomputation (``checkpoint``) can replay it by replaying the offset.
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Iterator, NamedTuple, Tuple

import numpy as np

_host = np.random.default_rng(0)
_seed = 0
#: the offset the next random call will use
_offset = 0


class RngState(NamedTuple):
    """What ``get_rng_state`` returns and ``set_rng_state`` takes back."""

    seed: int
    offset: int
    host: dict  # numpy's bit_generator.state of the host generator


def manual_seed(seed: int) -> None:
    """Seed the host generator (fg.randn, fg.rand, layer initialisation) and the Philox
    stream behind the random kernels (key = seed mod 2**64, offset back to 0)."""
    global _host, _seed, _offset
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    _host = np.random.default_rng(int(seed))
    _seed = int(seed) % 2**64
    _offset = 0


def initial_seed() -> int:
    """The Philox key: the last ``manual_seed`` modulo 2**64 (0 before any)."""
    return _seed


def host_generator() -> np.random.Generator:
    """The generator that draws on the host (fg.randn, fg.rand, parameter init)."""
    return _host


def philox_next() -> Tuple[int, int]:
    """``(seed, offset)`` for one random kernel call; advances the offset by one."""
    global _offset
    seed, offset = _seed, _offset
    _offset = (offset + 1) % 2**64
    return seed, offset


def philox_offset() -> int:
    """The offset the next random kernel call will take."""
    return _offset


@contextlib.contextmanager
def philox_replay(offset: int) -> Iterator[None]:
    """Inside the block, random calls take offsets from ``offset`` on, as they did when
    the stream stood there (``checkpoint`` recomputes a region's masks this way); the
    stream's position is restored after it."""
    global _offset
    saved, _offset = _offset, int(offset) % 2**64
    try:
        yield
    finally:
        _offset = saved


def get_rng_state() -> RngState:
    """Both generators' state, for ``set_rng_state`` (``torch.get_rng_state``)."""
    return RngState(_seed, _offset, _host.bit_generator.state)


def set_rng_state(state: RngState) -> None:
    """Put both generators back where ``get_rng_state`` found them."""
    global _host, _seed, _offset
    if not isinstance(state, RngState):
        raise TypeError(f"state: expected the RngState fg.get_rng_state() returns, got "
                        f"{type(state).__name__}")
    host = np.random.default_rng()
    host.bit_generator.state = state.host
    _host, _seed, _offset = host, state.seed, state.offset

"""Parameter initialisation drawn on the host from fg.manual_seed's generator (ferrograd.random)."""

from __future__ import annotations

import math

import numpy as np

from ..random import host_generator


def uniform(shape, bound: float, dtype) -> np.ndarray:
    return host_generator().uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_uniform_bound(fan_in: int) -> float:
    """torch's default for Linear/Conv weights: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in))."""
    gain = math.sqrt(2.0 / (1 + 5.0))
    return gain * math.sqrt(3.0 / fan_in) if fan_in else 0.0

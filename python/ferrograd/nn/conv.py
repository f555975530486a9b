"""Conv2d with PyTorch's arguments, weight layout, parameter names and initialisation."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..backends import _conv, get_backend
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


class Conv2d(Module):
    """torch.nn.Conv2d: weight (out_channels, in_channels / groups, KH, KW), bias
    (out_channels,), both uniform in +-1/sqrt(fan_in) as PyTorch's default init
    (kaiming_uniform with a = sqrt(5)), fan_in = in_channels / groups * KH * KW.
    ``padding_mode`` is "zeros" only. ``algo`` (ferrograd) is passed to F.conv2d."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 algo: str = "auto", backend=None, dtype=np.float32):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        if in_channels % groups:
            raise ValueError(f"groups: in_channels ({in_channels}) must be divisible by groups ({groups})")
        if out_channels % groups:
            raise ValueError(f"groups: out_channels ({out_channels}) must be divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode: only 'zeros' is supported, got {padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _conv.pair(kernel_size, "kernel_size", 1)
        self.stride = _conv.pair(stride, "stride", 1)
        self.padding = padding if isinstance(padding, str) else _conv.pair(padding, "padding", 0)
        self.dilation = _conv.pair(dilation, "dilation", 1)
        self.groups = groups
        self.padding_mode = padding_mode
        self.algo = _conv.check_algo(algo)
        be = get_backend(backend)
        fan_in = (in_channels // groups) * self.kernel_size[0] * self.kernel_size[1]
        shape = (out_channels, in_channels // groups) + self.kernel_size
        w = init.uniform(shape, init.kaiming_uniform_bound(fan_in), dtype)
        self.weight = Parameter(Tensor(be.from_numpy(w), be))
        if bias:
            b = init.uniform((out_channels,), 1.0 / math.sqrt(fan_in), dtype)
            self.bias = Parameter(Tensor(be.from_numpy(b), be))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups, algo=self.algo)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}")

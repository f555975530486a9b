"""Dropout modules: Dropout, DropConnect (a Linear whose weights are dropped in
training), DropBlock2d. Masks come from fg.manual_seed's stream, the same on every
backend; eval mode (``module.eval()``) turns them into the identity."""

from __future__ import annotations

from .. import functional as F
from ..backends import _dropout
from .linear import Linear
from .module import Module


class Dropout(Module):
    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _dropout.check_p(p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class DropConnect(Linear):
    """Linear layer with DropConnect (Wan et al. 2013): in training each weight is zeroed
    with probability p (one mask per forward call, shared by the batch) and the kept ones
    scaled by 1 / (1 - p), so eval uses the weights as they are with the same expected
    output. The bias is not dropped. Parameters and their names are Linear's."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.5,
                 backend=None, dtype=None):
        kw = {} if dtype is None else {"dtype": dtype}
        super().__init__(in_features, out_features, bias=bias, backend=backend, **kw)
        self.p = _dropout.check_p(p)

    def forward(self, x):
        return F.linear(x, F.dropout(self.weight, self.p, self.training), self.bias)

    def extra_repr(self):
        return super().extra_repr() + f", p={self.p}"


class DropBlock2d(Module):
    """torchvision.ops.DropBlock2d: drops b x b blocks of (N, C, H, W) feature maps."""

    def __init__(self, p: float = 0.1, block_size: int = 7):
        super().__init__()
        self.p = _dropout.check_p(p)
        if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
            raise ValueError(f"block_size: expected a positive int, got {block_size!r}")
        self.block_size = block_size

    def forward(self, x):
        return F.dropblock2d(x, self.p, self.block_size, self.training)

    def extra_repr(self):
        return f"p={self.p}, block_size={self.block_size}"

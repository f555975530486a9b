"""The Tensor methods that forward to an op (``t.relu()``, ``t[1:]``, ``t == 0``,
``t.sum(1)`` ...): PyTorch's method names, each a line calling the op of the same name in
``ferrograd.ops``, kept apart from the Tensor's own state and autograd (``tensor.py``)."""

from __future__ import annotations

import numbers

import numpy as np


class TensorOps:
    """Mixed into :class:`ferrograd.Tensor`."""

    # ---------------------------------------------------------- arithmetic
    def _operand(self, other, name="other") -> "TensorOps":
        if isinstance(other, TensorOps):
            return other
        if isinstance(other, numbers.Number) and not isinstance(other, bool):
            return self._wrap(self.backend.full((), float(other), self.dtype), self.backend)
        if isinstance(other, np.ndarray):
            return self._wrap(self.backend.from_numpy(np.asarray(other, dtype=self.dtype)), self.backend)
        raise TypeError(f"{name}: expected a Tensor, a number or a numpy array, got {type(other).__name__}")

    def _binary(self, op, other, reflected=False):
        from .ops.elementwise import binary
        other = self._operand(other)
        return binary(op, other, self) if reflected else binary(op, self, other)

    def __add__(self, o): return self._binary("add", o)
    def __radd__(self, o): return self._binary("add", o, True)
    def __sub__(self, o): return self._binary("sub", o)
    def __rsub__(self, o): return self._binary("sub", o, True)
    def __mul__(self, o): return self._binary("mul", o)
    def __rmul__(self, o): return self._binary("mul", o, True)
    def __truediv__(self, o): return self._binary("div", o)
    def __rtruediv__(self, o): return self._binary("div", o, True)
    def __pow__(self, o): return self._binary("pow", o)
    def __rpow__(self, o): return self._binary("pow", o, True)

    # comparisons are elementwise, to bool tensors (as PyTorch); hashing stays by identity
    __hash__ = object.__hash__

    def _compare(self, op, other):
        from .ops.logic import compare
        return compare(op, self, other)

    def _dunder_compare(self, op, other):
        # an operand that is neither a Tensor nor a number: NotImplemented, so Python
        # answers == / != by identity (False / True) and < ... with its TypeError, as
        # PyTorch's operators do
        if not isinstance(other, (TensorOps, numbers.Real, np.bool_)):
            return NotImplemented
        return self._compare(op, other)

    def __eq__(self, o): return self._dunder_compare("eq", o)  # type: ignore[override]
    def __ne__(self, o): return self._dunder_compare("ne", o)  # type: ignore[override]
    def __lt__(self, o): return self._dunder_compare("lt", o)
    def __le__(self, o): return self._dunder_compare("le", o)
    def __gt__(self, o): return self._dunder_compare("gt", o)
    def __ge__(self, o): return self._dunder_compare("ge", o)
    def eq(self, o): return self._compare("eq", o)
    def ne(self, o): return self._compare("ne", o)
    def lt(self, o): return self._compare("lt", o)
    def le(self, o): return self._compare("le", o)
    def gt(self, o): return self._compare("gt", o)
    def ge(self, o): return self._compare("ge", o)

    def __bool__(self) -> bool:
        if self.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is "
                               f"ambiguous (shape {self.shape}): use .any() or .all()")
        return bool(self.item())

    def __invert__(self):
        from .ops.logic import logical_not
        return logical_not(self)

    def __and__(self, o):
        from .ops.logic import logical_and
        return logical_and(self, o)

    def __or__(self, o):
        from .ops.logic import logical_or
        return logical_or(self, o)

    def __xor__(self, o):
        from .ops.logic import logical_xor
        return logical_xor(self, o)

    def any(self, dim=None, keepdim: bool = False):
        from .ops.logic import any as _any
        return _any(self, dim, keepdim)

    def all(self, dim=None, keepdim: bool = False):
        from .ops.logic import all as _all
        return _all(self, dim, keepdim)

    def isnan(self):
        from .ops.logic import isnan
        return isnan(self)

    def isinf(self):
        from .ops.logic import isinf
        return isinf(self)

    def isfinite(self):
        from .ops.logic import isfinite
        return isfinite(self)

    def masked_fill(self, mask, value):
        from .ops.logic import masked_fill
        return masked_fill(self, mask, value)

    def where(self, condition, other):
        from .ops.logic import where
        return where(condition, self, other)

    def __neg__(self):
        from .ops.elementwise import unary
        return unary("neg", self)

    def __matmul__(self, other):
        from .ops.linear import matmul
        return matmul(self, self._operand(other))

    def __rmatmul__(self, other):
        from .ops.linear import matmul
        return matmul(self._operand(other), self)

    def add(self, o): return self + o
    def sub(self, o): return self - o
    def mul(self, o): return self * o
    def div(self, o): return self / o
    def pow(self, o): return self ** o
    def neg(self): return -self
    def matmul(self, o): return self @ o

    def exp(self):
        from .ops.elementwise import unary
        return unary("exp", self)

    def log(self):
        from .ops.elementwise import unary
        return unary("log", self)

    def _unary(self, op):
        from .ops.elementwise import unary
        return unary(op, self)

    def abs(self): return self._unary("abs")
    def __abs__(self): return self._unary("abs")
    def sqrt(self): return self._unary("sqrt")
    def rsqrt(self): return self._unary("rsqrt")
    def sin(self): return self._unary("sin")
    def cos(self): return self._unary("cos")

    def maximum(self, other):
        from .ops.elementwise import maximum
        return maximum(self, other)

    def minimum(self, other):
        from .ops.elementwise import minimum
        return minimum(self, other)

    def clamp(self, min=None, max=None):  # noqa: A002 - PyTorch's argument names
        from .ops.elementwise import clamp
        return clamp(self, min, max)

    clip = clamp

    def clamp_min(self, min):  # noqa: A002
        return self.clamp(min=min)

    def clamp_max(self, max):  # noqa: A002
        return self.clamp(max=max)

    # --------------------------------------------------------- activations
    def relu(self):
        from . import functional as F
        return F.relu(self)

    def sigmoid(self):
        from . import functional as F
        return F.sigmoid(self)

    def tanh(self):
        from . import functional as F
        return F.tanh(self)

    def softmax(self, dim: int = -1):
        from . import functional as F
        return F.softmax(self, dim)

    def log_softmax(self, dim: int = -1):
        from . import functional as F
        return F.log_softmax(self, dim)

    # ----------------------------------------------------- reductions, layout
    def sum(self, dim=None, keepdim: bool = False):
        from .ops.reduce import sum as _sum
        return _sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        from .ops.reduce import mean
        return mean(self, dim, keepdim)

    def var(self, dim=None, *, correction=1, keepdim: bool = False):
        from .ops.reduce import var
        return var(self, dim, correction=correction, keepdim=keepdim)

    def std(self, dim=None, *, correction=1, keepdim: bool = False):
        from .ops.reduce import std
        return std(self, dim, correction=correction, keepdim=keepdim)

    def norm(self, p=2, dim=None, keepdim: bool = False):
        from .ops.reduce import norm
        return norm(self, p, dim, keepdim)

    def reshape(self, *shape):
        from .ops.layout import reshape
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return reshape(self, shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        from .ops.layout import flatten
        return flatten(self, start_dim, end_dim)

    def permute(self, *dims):
        from .ops.layout import permute
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return permute(self, dims)

    def transpose(self, dim0: int, dim1: int):
        from .ops.layout import transpose
        return transpose(self, dim0, dim1)

    def __getitem__(self, key):
        from .ops.indexing import getitem
        return getitem(self, key)

    def narrow(self, dim: int, start: int, length: int):
        from .ops.indexing import narrow
        return narrow(self, dim, start, length)

    def split(self, split_size, dim: int = 0):
        from .ops.indexing import split
        return split(self, split_size, dim)

    def chunk(self, chunks: int, dim: int = 0):
        from .ops.indexing import chunk
        return chunk(self, chunks, dim)

    def unbind(self, dim: int = 0):
        from .ops.indexing import unbind
        return unbind(self, dim)

    def squeeze(self, dim=None):
        from .ops.layout import squeeze
        return squeeze(self, dim)

    def unsqueeze(self, dim: int):
        from .ops.layout import unsqueeze
        return unsqueeze(self, dim)

    def expand(self, *sizes):
        from .ops.layout import expand
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        return expand(self, sizes)

    def expand_as(self, other):
        return self.expand(other.shape)

    def repeat(self, *sizes):
        from .ops.layout import repeat
        return repeat(self, *sizes)

    def movedim(self, source, destination):
        from .ops.layout import movedim
        return movedim(self, source, destination)

    def unflatten(self, dim: int, sizes):
        from .ops.layout import unflatten
        return unflatten(self, dim, sizes)

    def contiguous(self):
        """Every ferrograd tensor is contiguous (ops materialize their results)."""
        return self

    @property
    def mT(self):
        """The last two dimensions swapped (batched matrix transpose)."""
        if self.ndim < 2:
            raise ValueError(f"mT: expected a tensor of at least 2 dimensions, got {self.ndim}-D")
        return self.transpose(-2, -1)

    @property
    def T(self):
        if self.ndim != 2:
            raise ValueError(f"T: expected a 2-D tensor, got {self.ndim}-D (use permute)")
        return self.transpose(0, 1)

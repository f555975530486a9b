"""Tensor: a backend array, its gradient and the node that made it."""

from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple

import numpy as np

from .autograd import engine
from .backends import get_backend
from .backends.base import Backend
from .random import host_generator
from .tensor_ops import TensorOps

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: PyTorch's default dtype for floats given as Python numbers or lists
_DEFAULT_FLOAT = np.dtype(np.float32)

def _normalize_dtype(dtype) -> Optional[np.dtype]:
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype in ("float", "float32"):
        return np.dtype(np.float32)
    if isinstance(dtype, str) and dtype in ("double", "long"):
        return np.dtype(np.float64 if dtype == "double" else np.int64)
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected a numpy dtype such as float32, got {dtype!r}") from exc
    if dt not in _FLOAT_DTYPES and dt != np.dtype(np.int64) and dt != np.dtype(np.bool_):
        raise TypeError(f"dtype: expected float32, float64, int64 or bool, got {dt}")
    return dt


class Tensor(TensorOps):
    """An n-dimensional array on one backend that can record the ops applied to it.

    ``data`` is the backend's native array (numpy.ndarray for numpy and rust, a PyCUDA
    GPUArray for cuda). ``grad`` is a Tensor on the same backend once backward has run.
    """

    __array_priority__ = 1000  # so ndarray <op> Tensor defers to Tensor's reflected ops

    def __init__(self, data: Any, backend: Backend, requires_grad: bool = False):
        self.data = data
        self.backend = backend
        self.grad: Optional[Tensor] = None
        self._node: Optional[engine.Node] = None
        self._index = 0
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, data, backend, requires_grad=False, node=None, index=0) -> "Tensor":
        t = Tensor.__new__(Tensor)
        t.data = data
        t.backend = backend
        t.grad = None
        t._node = node
        t._index = index
        t._retains_grad = False
        t.requires_grad = requires_grad
        return t

    # ------------------------------------------------------------ properties
    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.data.shape:
            n *= d
        return n

    def numel(self) -> int:
        return self.size

    def dim(self) -> int:
        return self.ndim

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self) -> Optional[engine.Node]:
        return self._node

    @property
    def device(self) -> str:
        return self.backend.name

    def __len__(self) -> int:
        if not self.data.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __repr__(self) -> str:
        """As PyTorch writes it: the values, then only what is not the default (the
        backend unless numpy, the dtype unless float32 or int64, grad_fn or
        requires_grad)."""
        values = self.numpy()
        # PyTorch's format: "1., 2." when every value is integral, else 4 fixed decimals
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        fixed = values.dtype.kind == "f" and not np.all(np.mod(finite, 1) == 0)
        body = np.array2string(values, separator=", ", precision=4, threshold=1000,
                               floatmode="fixed" if fixed else "maxprec", prefix="tensor(")
        extra = []
        if self.backend.name != "numpy":
            extra.append(f"backend={self.backend.name!r}")
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.bool_)) \
                or self.size == 0:
            extra.append(f"dtype={self.dtype}")
        if self._node is not None:
            extra.append(f"grad_fn=<{self._node.name}>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extra) + ")"

    # ------------------------------------------------------------- interop
    def __array__(self, dtype=None, copy=None):
        """``np.asarray(t)``: the values (shared with the tensor on the CPU backends)."""
        arr = self.numpy()
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            return arr.astype(dtype)
        return np.array(arr, copy=True) if copy else arr

    def __dlpack__(self, stream=None, **kwargs):
        """DLPack export (``torch.from_dlpack(t)``, ``np.from_dlpack(t)``): zero copy on the
        CPU backends. cuda tensors export through ``__cuda_array_interface__`` of
        ``t.data`` (a PyCUDA GPUArray) instead."""
        if self.backend.name == "cuda":
            raise BufferError("__dlpack__: cuda tensors are shared through "
                              "t.data.__cuda_array_interface__ (torch.as_tensor(t.data, "
                              "device='cuda')), not DLPack")
        return np.asarray(self.data).__dlpack__(**({"stream": stream} if stream is not None else {}))

    def __dlpack_device__(self):
        if self.backend.name == "cuda":
            raise BufferError("__dlpack_device__: cuda tensors are shared through "
                              "__cuda_array_interface__, not DLPack")
        return np.asarray(self.data).__dlpack_device__()

    def __reduce_ex__(self, protocol):
        """pickle: the values, the backend (by name) and requires_grad; a leaf comes back
        (as PyTorch's torch.save of a tensor). The class is kept (Parameter stays one)."""
        return (_rebuild, (type(self), self.numpy().copy(), self.backend.name, self.requires_grad))

    def __deepcopy__(self, memo):
        if self._node is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) "
                               "support the deepcopy protocol at the moment; detach() first")
        new = _rebuild(type(self), self.numpy().copy(), self.backend.name, self.requires_grad)
        memo[id(self)] = new
        if self.grad is not None:
            new.grad = self.grad.__deepcopy__(memo)
        return new

    # --------------------------------------------------------- conversions
    def numpy(self) -> np.ndarray:
        """The values as a numpy array (a copy from the GPU; shares memory on the CPU backends, as torch does)."""
        return np.asarray(self.backend.to_numpy(self.data))

    def item(self) -> float:
        if self.size != 1:
            raise ValueError(f"item(): expected a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def to(self, *args, dtype=None, backend=None) -> "Tensor":
        """This tensor on another backend and/or in another dtype, as PyTorch's
        ``t.to(device)``, ``t.to(dtype)``, ``t.to(device, dtype)``: each argument a backend
        name (or Backend) or a dtype. Differentiable: gradients flow back, cast back."""
        for a in args:
            if isinstance(a, (str, Backend)) and not (isinstance(a, str) and _is_dtype_name(a)):
                if backend is not None:
                    raise TypeError(f"to(): expected one backend, got {backend!r} and {a!r}")
                backend = a
            else:
                if dtype is not None:
                    raise TypeError(f"to(): expected one dtype, got {dtype!r} and {a!r}")
                dtype = a
        from .ops.layout import ToBackend, to_dtype

        target = self.backend if backend is None else get_backend(backend)
        dt = self.dtype if dtype is None else _normalize_dtype(dtype)
        out = self
        # cast where the dtype exists: before moving to cuda (float32 only), after leaving it
        if target.name == "cuda" and dt != out.dtype:
            out = to_dtype(out, dt)
        if target is not out.backend:
            out = ToBackend.apply(out, target)
        if dt != out.dtype:
            out = to_dtype(out, dt)
        return out

    def float(self) -> "Tensor":
        return self.to(dtype=np.float32)

    def double(self) -> "Tensor":
        return self.to(dtype=np.float64)

    def long(self) -> "Tensor":
        return self.to(dtype=np.int64)

    def detach(self) -> "Tensor":
        return Tensor._wrap(self.data, self.backend)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if flag and self.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"requires_grad: only float tensors can require grad, got dtype {self.dtype}")
        if not flag and self._node is not None:
            raise RuntimeError("requires_grad_(False) is only allowed on leaf tensors; use detach()")
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self) -> None:
        """Keep .grad on this non-leaf tensor after backward."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")
        self._retains_grad = True

    # --------------------------------------------------------------- autograd
    def backward(self, gradient: Optional["Tensor"] = None, retain_graph: Optional[bool] = None,
                 create_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into the .grad of every leaf it depends on
        (``create_graph``: record it for higher-order gradients, see each op's backward_graph)."""
        engine.backward([self], [gradient], retain_graph=retain_graph, create_graph=create_graph)

    def _accumulate_grad(self, g) -> None:
        # shapes are checked once, in autograd.engine.backward, before any accumulation
        if self.grad is None:
            self.grad = Tensor._wrap(g, self.backend)
        else:
            self.grad = Tensor._wrap(self.backend.binary_forward("add", self.grad.data, g), self.backend)



def _is_dtype_name(s: str) -> bool:
    return s in ("float", "float32", "float64", "double", "int64", "long")


def _rebuild(cls, values, backend_name, requires_grad):
    be = get_backend(backend_name)
    t = Tensor(be.from_numpy(np.require(values, requirements="C")), be, requires_grad=requires_grad)
    if cls is not Tensor:  # a Tensor subclass (nn.Parameter) keeps its class
        t.__class__ = cls
    return t


# ------------------------------------------------------------------ creation
def _as_array(data, dtype) -> np.ndarray:
    if isinstance(data, Tensor):
        arr = data.numpy()
    elif hasattr(data, "detach") and hasattr(data, "cpu") and hasattr(data, "numpy"):
        arr = data.detach().cpu().numpy()  # a torch.Tensor, one that requires grad included
    else:
        is_array = isinstance(data, np.ndarray) or hasattr(data, "__array_interface__")
        arr = np.asarray(data)
        if arr.dtype.kind == "f" and not is_array and dtype is None:
            # Python floats and lists of them: PyTorch's default dtype, float32 (a numpy
            # array keeps its float64, as torch.tensor(ndarray) does)
            arr = arr.astype(_DEFAULT_FLOAT)
    if dtype is not None:
        return np.array(arr, dtype=dtype, copy=True)
    if arr.dtype.kind == "f":
        return np.array(arr, dtype=arr.dtype if arr.dtype in _FLOAT_DTYPES else np.float32, copy=True)
    if arr.dtype.kind == "b":
        return np.array(arr, dtype=np.bool_, copy=True)
    if arr.dtype.kind in "iu":
        return np.array(arr, dtype=np.int64, copy=True)
    raise TypeError(f"data: expected numbers, got an array of dtype {arr.dtype}")


def tensor(data, backend=None, dtype=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (a numpy array, nested lists or a number).

    Floats keep float32/float64 (other float widths become float32), integers become int64.
    """
    be = get_backend(backend)
    arr = _as_array(data, _normalize_dtype(dtype))
    return Tensor(be.from_numpy(np.array(arr, order="C", copy=True)), be, requires_grad=requires_grad)


def _shape_arg(shape) -> Tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = tuple(shape)
    for d in shape:
        if not isinstance(d, numbers.Integral) or d < 0:
            raise ValueError(f"shape: expected non-negative integers, got {shape}")
    return tuple(int(d) for d in shape)


def full(shape, value: float, backend=None, dtype=np.float32, requires_grad=False) -> Tensor:
    be = get_backend(backend)
    return Tensor(be.full(_shape_arg((shape,)), value, _normalize_dtype(dtype)), be, requires_grad)


def zeros(*shape, backend=None, dtype=np.float32, requires_grad=False) -> Tensor:
    return full(_shape_arg(shape), 0.0, backend, dtype, requires_grad)


def ones(*shape, backend=None, dtype=np.float32, requires_grad=False) -> Tensor:
    return full(_shape_arg(shape), 1.0, backend, dtype, requires_grad)


def randn(*shape, backend=None, dtype=np.float32, requires_grad=False) -> Tensor:
    arr = host_generator().standard_normal(_shape_arg(shape)).astype(_normalize_dtype(dtype))
    return tensor(arr, backend=backend, requires_grad=requires_grad)


def rand(*shape, backend=None, dtype=np.float32, requires_grad=False) -> Tensor:
    arr = host_generator().random(_shape_arg(shape)).astype(_normalize_dtype(dtype))
    return tensor(arr, backend=backend, requires_grad=requires_grad)

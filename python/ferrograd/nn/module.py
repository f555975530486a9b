"""Module and Parameter: the building blocks of layers, with PyTorch's naming scheme."""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator, Optional, Tuple

import numpy as np

from ..backends import get_backend
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as learnable (requires_grad defaults to True)."""

    def __init__(self, data: Tensor, requires_grad: bool = True):
        if not isinstance(data, Tensor):
            raise TypeError(f"data: expected a Tensor, got {type(data).__name__}")
        super().__init__(data.data, data.backend, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def _host_array(value, name: str) -> np.ndarray:
    """Numpy copy of a state_dict entry: a ferrograd Tensor, a numpy array or a torch tensor."""
    if isinstance(value, Tensor):
        return value.numpy()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"state_dict[{name!r}]: expected an array, got {type(value).__name__}") from exc


class Module:
    """Base class of layers. Assigning a Parameter, Module or buffer attribute registers it."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if name in self._buffers and (value is None or isinstance(value, Tensor)) \
                and not isinstance(value, Parameter):
            self._buffers[name] = value  # re-assigning a buffer keeps it a buffer
            return
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for registry in ("_parameters", "_modules", "_buffers"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._modules, self._buffers):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        if param is None:
            self._parameters[name] = None
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, tensor: Optional[Tensor], persistent: bool = True) -> None:
        """A non-learnable tensor that is part of the module's state (running statistics,
        counters), as torch.nn.Module.register_buffer: it is moved by ``to(backend)``,
        listed by ``buffers()``, and saved by ``state_dict`` unless ``persistent=False``.
        Assigning a Tensor (or None) to the name later keeps it a buffer."""
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"name: expected a non-empty buffer name without '.', got {name!r}")
        if tensor is not None and (not isinstance(tensor, Tensor) or isinstance(tensor, Parameter)):
            raise TypeError(f"tensor: expected a Tensor (not a Parameter) or None for buffer "
                            f"{name!r}, got {type(tensor).__name__}")
        if name in self._parameters or name in self._modules or \
                (name in self.__dict__ and name not in self._buffers):
            raise KeyError(f"name: attribute {name!r} already exists and is not a buffer")
        self._buffers[name] = tensor
        non_persistent = self.__dict__.setdefault("_non_persistent_buffers", set())
        if persistent:
            non_persistent.discard(name)
        else:
            non_persistent.add(name)

    def add_module(self, name: str, module: "Module") -> None:
        self._modules[name] = module

    # -------------------------------------------------------------- traversal
    def named_modules(self, prefix: str = "") -> Iterator[Tuple[str, "Module"]]:
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return (m for m in self._modules.values() if m is not None)

    def named_parameters(self, prefix: str = "") -> Iterator[Tuple[str, Parameter]]:
        seen = set()
        for mod_name, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self, prefix: str = ""):
        for mod_name, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self):
        return (b for _, b in self.named_buffers())

    # ------------------------------------------------------------------ state
    @staticmethod
    def _state_items(m):
        """(name, tensor) of m's parameters, then its persistent buffers, as PyTorch orders them."""
        skip = m.__dict__.get("_non_persistent_buffers", ())
        return list(m._parameters.items()) + [(n, b) for n, b in m._buffers.items() if n not in skip]

    def state_dict(self) -> "OrderedDict[str, Tensor]":
        """Parameters and persistent buffers by PyTorch's dotted names, as detached tensors."""
        out = OrderedDict()
        for mod_name, m in self.named_modules():
            for name, t in self._state_items(m):
                if t is not None:
                    out[f"{mod_name}.{name}" if mod_name else name] = t.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values into this module's parameters and buffers.

        Accepts ferrograd Tensors, numpy arrays or torch tensors, so a PyTorch model's
        state_dict loads as it is. With strict=True, missing or unexpected keys raise.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        targets = {}
        for mod_name, m in self.named_modules():
            for name, t in self._state_items(m):
                if t is not None:
                    targets[f"{mod_name}.{name}" if mod_name else name] = t
        for key, value in state_dict.items():
            if key not in targets:
                continue
            t = targets[key]
            arr = _host_array(value, key)
            if tuple(arr.shape) != t.shape:
                raise ValueError(f"state_dict[{key!r}]: expected shape {t.shape}, got {tuple(arr.shape)}")
            # a copy: buffers are updated in place and must not alias the caller's arrays
            t.data = t.backend.from_numpy(np.array(arr, dtype=t.dtype, order="C", copy=True))
        return missing, unexpected

    # ------------------------------------------------------------ modes, moves
    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def to(self, *args, dtype=None, backend=None) -> "Module":
        """Move every parameter, gradient and buffer to a backend and/or cast the floating
        ones to a float dtype, in place (PyTorch's ``module.to(device, dtype)``; integer
        buffers such as num_batches_tracked keep their dtype); returns self."""
        from ..tensor import _is_dtype_name

        for a in args:  # a string is a backend unless it names a dtype (as Tensor.to)
            if isinstance(a, str) and not _is_dtype_name(a) or hasattr(a, "from_numpy"):
                backend = a
            else:
                dtype = a
        if dtype is not None:
            self._cast_floats(dtype)
        if backend is None:
            return self
        be = get_backend(backend)
        for m in self.modules():
            for reg in (m._parameters, m._buffers):
                for t in reg.values():
                    if t is None or t.backend is be:
                        continue
                    t.data = be.from_numpy(np.require(t.numpy(), requirements="C"))
                    if t.grad is not None:
                        t.grad = Tensor(be.from_numpy(np.require(t.grad.numpy(), requirements="C")), be)
                    t.backend = be
        return self

    def _cast_floats(self, dtype) -> None:
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype: expected a float dtype (float32 or float64), got {dt}")
        for m in self.modules():
            for reg in (m._parameters, m._buffers):
                for t in reg.values():
                    if t is None or t.dtype.kind != "f" or t.dtype == dt:
                        continue
                    be = t.backend
                    t.data = be.from_numpy(np.require(t.numpy().astype(dt), requirements="C"))
                    if t.grad is not None:
                        t.grad = Tensor(be.from_numpy(np.require(t.grad.numpy().astype(dt),
                                                                 requirements="C")), be)

    def float(self) -> "Module":
        """Cast floating parameters and buffers to float32 (module.float())."""
        return self.to(dtype=np.float32)

    def double(self) -> "Module":
        """Cast floating parameters and buffers to float64 (module.double())."""
        return self.to(dtype=np.float64)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor(p.backend.full(p.shape, 0.0, p.dtype), p.backend)

    # ---------------------------------------------------------------- calling
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            lines = [f"{type(self).__name__}("]
            for name, m in self._modules.items():
                sub = repr(m).replace("\n", "\n  ")
                lines.append(f"  ({name}): {sub}")
            lines.append(")")
            return "\n".join(lines)
        return lines[0] + ")"


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ... as in PyTorch."""

    def __init__(self, *modules: Module):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                if not isinstance(m, Module):
                    raise TypeError(f"modules[{i}]: expected a Module, got {type(m).__name__}")
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

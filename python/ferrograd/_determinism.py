"""``fg.use_deterministic_algorithms`` (PyTorch's name and meaning).

Every CPU kernel (numpy and rust backends, ``ferrograd.native``) is deterministic
always: the same inputs give the same bits, run to run, process to process and whatever
the thread count (parallel reductions combine fixed chunks in index order;
``tests/test_determinism.py``). On cuda every kernel is deterministic too, except those
listed in ``NONDETERMINISTIC_CUDA_KERNELS``, where ordering float atomics would cost a
large part of the kernel's speed; with ``use_deterministic_algorithms(True)`` the cuda
backend runs a deterministic kernel in their place instead (slower, same results to
rounding).

Integer atomics (DropBlock's kept-element count) are exact, so they are not listed.
"""

from __future__ import annotations

#: kernel -> why it is not deterministic (and what replaces it in deterministic mode)
NONDETERMINISTIC_CUDA_KERNELS = {
    "attention_backward_wide_d64": "dQ summed over key blocks with float atomicAdd; "
                                   "deterministic mode: attention_backward_dq/_dkdv (one thread per row)",
    "attention_backward_tf32_d64": "the same, on tensor cores (float32 matmul precision 'high')",
}

_state = {"enabled": False, "warn_only": False}


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Make every kernel deterministic (see the module docstring), as in PyTorch."""
    if not isinstance(mode, bool):
        raise TypeError(f"mode: expected a bool, got {type(mode).__name__}")
    if not isinstance(warn_only, bool):
        raise TypeError(f"warn_only: expected a bool, got {type(warn_only).__name__}")
    _state["enabled"], _state["warn_only"] = mode, warn_only


def are_deterministic_algorithms_enabled() -> bool:
    return _state["enabled"]


def is_deterministic_algorithms_warn_only_enabled() -> bool:
    return _state["warn_only"]

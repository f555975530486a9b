"""Benchmark rows for the tensor API around the layers (issue 17): a strided slice, cat
of four blocks, split into heads, a clamp/maximum chain, where over a comparison, the
new unary math, a row norm and a sum over a middle dim, on
every implementation against PyTorch. Same code on both sides: the ops have PyTorch's
names, so one lambda per row serves ferrograd and torch alike."""

from __future__ import annotations

from typing import List

from .suite import CPU_IMPLS, GPU_IMPLS, Case, _Lib, _timed, host_data


def _row(label: str, shapes, call, out_shape, backward: bool, group: str, impls) -> Case:
    """One row: ``call(lib, *tensors)`` on float32 inputs of ``shapes``; backward seeds
    the output (of ``out_shape``) with a fixed gradient."""

    def make(impl: str):
        lib = _Lib(impl)
        xs = [lib.tensor(host_data(int(_prod(s)), i).reshape(s), backward)
              for i, s in enumerate(shapes)]
        g = lib.tensor(host_data(int(_prod(out_shape)), 9).reshape(out_shape))
        return _timed(lib, lambda: call(lib, *xs), xs, g, backward)

    return Case(f"{label} {'fwd+bwd' if backward else 'fwd'}", group, tuple(impls), make,
                params={"shapes": [list(s) for s in shapes]})


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _ns(lib: _Lib):
    """The module with cat/maximum/clamp: torch, or ferrograd."""
    if lib.is_torch:
        import torch

        return torch
    import ferrograd

    return ferrograd


def tensor_api_cases(quick: bool = False) -> List[Case]:
    r, c = (512, 1024) if quick else (4096, 1024)
    b, t, e, h = (4, 64, 256, 4) if quick else (16, 256, 768, 12)
    impls = CPU_IMPLS + GPU_IMPLS
    cases: List[Case] = []
    for bwd in (False, True):
        cases.append(_row(f"slice x[:, 1::2] {r}x{c}", [(r, c)], lambda lib, x: x[:, 1::2],
                          (r, c // 2), bwd, "tensor api", impls))
        q = c // 4
        cases.append(_row(f"cat 4x({r}x{q}) dim 1", [(r, q)] * 4,
                          lambda lib, *xs: _ns(lib).cat(list(xs), 1), (r, c), bwd,
                          "tensor api", impls))
        # a fused qkv projection's output split into q, k, v heads (a GPT block's first step)
        cases.append(_row(f"qkv split+heads {b}x{t}x{3 * e} h{h}", [(b, t, 3 * e)],
                          lambda lib, x: _ns(lib).cat([p.reshape(b, t, h, e // h).transpose(1, 2)
                                                       for p in x.split(e, 2)], 1),
                          (b, 3 * h, t, e // h), bwd, "tensor api", impls))
        cases.append(_row(f"clamp*maximum {r}x{c}", [(r, c), (r, c)],
                          lambda lib, x, y: _ns(lib).clamp(x, -0.5, 0.5) * _ns(lib).maximum(x, y),
                          (r, c), bwd, "tensor api", impls))
        cases.append(_row(f"where(x > 0, x, y) {r}x{c}", [(r, c), (r, c)],
                          lambda lib, x, y: _ns(lib).where(x > 0, x, y), (r, c), bwd,
                          "tensor api", impls))
        cases.append(_row(f"sqrt(abs(x)) + sin(x) {r}x{c}", [(r, c)],
                          lambda lib, x: _ns(lib).sqrt(_ns(lib).abs(x)) + _ns(lib).sin(x),
                          (r, c), bwd, "tensor api", impls))
        cases.append(_row(f"norm dim -1 of {r}x{c}", [(r, c)],
                          lambda lib, x: x.norm(dim=-1), (r,), bwd, "tensor api", impls))
        cases.append(_row(f"sum dim 1 of {b * 4}x{t}x{e}", [(b * 4, t, e)],
                          lambda lib, x: x.sum(dim=1), (b * 4, e), bwd, "tensor api", impls))
    return cases

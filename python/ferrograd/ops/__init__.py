"""Differentiable ops, one file per op family (the same families as the backends' kernels)."""

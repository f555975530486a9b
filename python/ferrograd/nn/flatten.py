"""Flatten with PyTorch's arguments: torch.nn.Flatten(start_dim=1, end_dim=-1)."""

from __future__ import annotations

from .module import Module


class Flatten(Module):
    """Flattens dims ``start_dim..end_dim`` (inclusive, negative counts from the end) into
    one, like torch.nn.Flatten: (N, C, H, W) -> (N, C * H * W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        for name, v in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name}: expected an int, got {v!r}")
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

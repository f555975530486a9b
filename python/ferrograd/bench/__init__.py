"""The benchmark command: ``ferrograd-bench`` / ``python -m ferrograd.bench``.

It times each row of a suite (``suite.py``) on every available backend and on PyTorch
when installed, with warm-up then the median of repeats (CUDA events on the GPU), and
reports ratios to numpy and to PyTorch in one run (``report.py``).
"""

from .suite import Case, default_suite

__all__ = ["Case", "default_suite"]

"""The cuda backend: comparisons, logic, predicates, where and any/all, computed on the
host by the numpy backend's kernels (a copy each way). Correct on every input; not fast:
GPU kernels for this family are still to be written (benches/README.md, tensor API
rows)."""

from __future__ import annotations

from ..numpy.logic import LogicKernels as _Host


class LogicKernels:
    """The cuda backend's comparisons, logic, predicates, where and any/all (on the host)."""

    def _host(self, *arrays):
        return [None if a is None else self.to_numpy(a) for a in arrays]

    def compare(self, op, a, b):
        return self.from_numpy(_Host.compare(self, op, *self._host(a, b)))

    def logical(self, op, a, b=None):
        return self.from_numpy(_Host.logical(self, op, *self._host(a, b)))

    def predicate(self, op, x):
        return self.from_numpy(_Host.predicate(self, op, *self._host(x)))

    def where(self, cond, a, b):
        return self.from_numpy(_Host.where(self, *self._host(cond, a, b)))

    def any_all(self, op, x, axes, keepdims):
        return self.from_numpy(_Host.any_all(self, op, *self._host(x), axes, keepdims))

"""Run generated (often bad) calls in a separate, memory-capped process and compare backends.

A crash in a kernel (an abort on a failed allocation, a segfault), a hang or a Rust panic
must fail a test, not kill the test run, so every case runs in a worker process: a fresh
interpreter (``python -m ferrograd.testing.fuzz --worker``) with its address space capped
(``RLIMIT_AS``), fed cases over a pipe. A worker that dies or stops answering is reported
with the case and the tail of its stderr, and a new one is started for the next case.

A fresh interpreter rather than ``os.fork``: the parent (pytest) may already have started
rayon's thread pool, and a forked child inherits the pool's state but not its threads, so
its first parallel kernel would wait forever.

A case is plain data (see ``fuzz_cases``): ``{"op": name, "args": [...], "kwargs": {...},
"backward": bool}``, where an argument is ``("value", v)`` or ``("tensor", array, layout,
requires_grad)``. The worker runs it on each backend and answers, per backend, either
``("ok", outputs, grads)`` or ``("raise", class name, message)``. ``check`` then requires:
no crash, no hang, no panic, only the exception classes a user may be given, and the same
answer on every backend (the same class, or results equal to tolerance with NaN and ±inf
in the same places).

    python -m ferrograd.testing.fuzz --examples 10000     # the long profile, locally
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

#: what a user may be given for bad input; anything else is a bug (AttributeError,
#: IndexError, KeyError, OverflowError, ZeroDivisionError, a PanicException, ...)
ALLOWED_ERRORS = ("ValueError", "TypeError", "MemoryError", "NotImplementedError",
                  "IndexOutOfBoundsError")  # ops.indexing's IndexError, PyTorch's class
#: the address-space cap of a worker: a request past it must raise MemoryError
MEMORY_CAP = 3 << 30
#: seconds one case may take (all backends, forward and backward) before it counts as a hang
CASE_TIMEOUT = 60.0


# ---------------------------------------------------------------------- the worker side
def _build_arg(spec, backend_name: str, leaves: List):
    import ferrograd as fg

    if spec[0] == "value":
        return spec[1]
    if spec[0] == "list":
        return [_build_arg(s, backend_name, leaves) for s in spec[1]]
    _, arr, layout, requires_grad = spec
    be = fg.get_backend(backend_name)
    if layout.startswith("expand:"):
        # a small tensor expanded (a broadcast view) to a huge logical shape
        shape = tuple(int(d) for d in layout[len("expand:"):].split(","))
        t = fg.tensor(arr, backend=backend_name, requires_grad=requires_grad)
        if requires_grad:
            leaves.append(t)
        return fg.functional.expand(t, shape)
    if layout == "plain":
        t = fg.tensor(arr, backend=backend_name, requires_grad=requires_grad)
    else:
        t = fg.Tensor(be.from_numpy(_with_layout(arr, layout)), be, requires_grad=requires_grad)
    if requires_grad:
        leaves.append(t)
    return t


def _with_layout(arr: np.ndarray, layout: str) -> np.ndarray:
    """``arr``'s values in an unusual memory layout (what ``fg.Tensor(array, backend)`` accepts),
    always in fresh memory: a backend may wrap the array without copying and update it in
    place (an optimizer step), and the next backend must start from the case's values."""
    arr = np.array(arr, copy=True)
    if layout == "transposed":  # same logical array, Fortran order
        return np.asfortranarray(arr)
    if layout == "strided":  # every other element of a bigger buffer
        if arr.ndim == 0:
            return arr.copy()
        big = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), arr.dtype)
        big[..., ::2] = arr
        return big[..., ::2]
    if layout == "unaligned":  # the data pointer one byte past an aligned buffer
        out = np.zeros(arr.nbytes + 1, np.uint8)[1:].view(arr.dtype).reshape(arr.shape)
        out[...] = arr
        return out
    if layout == "readonly":
        out = arr.copy()
        out.setflags(write=False)
        return out
    if layout == "byteswapped":
        return arr.astype(arr.dtype.newbyteorder())
    raise ValueError(f"layout: unknown {layout!r}")


def _to_numpy(x) -> Optional[np.ndarray]:
    import ferrograd as fg

    if isinstance(x, fg.Tensor):
        return np.array(x.backend.to_numpy(x.data), copy=True)
    if isinstance(x, (int, float, np.ndarray, np.generic)):
        return np.asarray(x)
    return None


#: outputs past this many elements are compared by shape and dtype (see run_on_backend)
HUGE_OUTPUT = 10**8


def _is_huge(x) -> bool:
    shape = getattr(x, "shape", ())
    return int(np.prod(shape, dtype=object)) > HUGE_OUTPUT


def _shape_only(x):
    return ("shape", tuple(x.shape), str(x.dtype)) if _is_huge(x) else _to_numpy(x)


def _flatten_outputs(out) -> List:
    if isinstance(out, (tuple, list)):
        res = []
        for o in out:
            res.extend(_flatten_outputs(o))
        return res
    return [out]


def run_on_backend(case: Dict[str, Any], backend_name: str) -> Tuple:
    """The outcome of ``case`` on one backend: ("ok", outputs, grads) or ("raise", cls, msg)."""
    import ferrograd as fg

    from .fuzz_cases import OPS

    stage = "build"
    try:
        fg.manual_seed(case.get("seed", 0))
        leaves: List = []
        args = [_build_arg(a, backend_name, leaves) for a in case["args"]]
        kwargs = {k: _build_arg(v, backend_name, leaves) for k, v in case["kwargs"].items()}
        stage = "forward"
        out = OPS[case["op"]](*args, **kwargs)
        outs = _flatten_outputs(out)
        grads: List = []
        if any(_is_huge(o) for o in outs):
            # an op that may return its input (dropout in eval mode, p=0) hands back the
            # huge broadcast view itself: correct, but summing or copying its 10**12
            # elements takes hours in any library, so such an answer is its shape alone
            return ("ok", [_shape_only(o) for o in outs], grads)
        if case.get("backward"):
            stage = "backward"
            first = outs[0]
            if isinstance(first, fg.Tensor) and first.requires_grad:
                first.sum().backward()
                grads = [None if t.grad is None else _to_numpy(t.grad) for t in leaves]
        return ("ok", [_to_numpy(o) for o in outs], grads)
    except BaseException as exc:  # noqa: BLE001 - a PanicException is a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return ("raise", type(exc).__name__, f"[{stage}] {exc}"[:500])


def _worker_main() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the library prints goes to stderr, not into the protocol
    import warnings

    warnings.simplefilter("ignore")  # overflow warnings on extreme values are expected here
    import ferrograd as fg

    backends = [b for b in ("numpy", "rust") if b in fg.available_backends()]
    while True:
        head = proto_in.read(4)
        if len(head) < 4:
            return
        case = pickle.loads(proto_in.read(struct.unpack("<I", head)[0]))
        answer = {b: run_on_backend(case, b) for b in backends}
        blob = pickle.dumps(answer)
        proto_out.write(struct.pack("<I", len(blob)) + blob)
        proto_out.flush()


# ---------------------------------------------------------------------- the parent side
class Worker:
    """One worker process; ``run`` returns the per-backend answers, or ("crash"|"hang", detail)."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.err = None

    def _start(self) -> None:
        self.err = tempfile.TemporaryFile()
        env = dict(os.environ, RUST_BACKTRACE="0")
        self.proc = subprocess.Popen([sys.executable, "-m", "ferrograd.testing.fuzz", "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                     env=env)

    def _stderr_tail(self) -> str:
        self.err.seek(0)
        return self.err.read()[-1500:].decode(errors="replace")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def run(self, case: Dict[str, Any], timeout: float = CASE_TIMEOUT):
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        blob = pickle.dumps(case)
        try:
            self.proc.stdin.write(struct.pack("<I", len(blob)) + blob)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            self.stop()
            return ("hang", f"no answer in {timeout:.0f} s")
        head = self.proc.stdout.read(4)
        if len(head) < 4:
            code = self.proc.wait()
            detail = f"worker died with status {code}: {self._stderr_tail()}"
            self.proc = None
            return ("crash", detail)
        return ("answer", pickle.loads(self.proc.stdout.read(struct.unpack("<I", head)[0])))


def _same_values(a: Optional[np.ndarray], b: Optional[np.ndarray], scale: float) -> Optional[str]:
    """None when ``a`` and ``b`` agree (shape, dtype, NaN/±inf positions, values to
    tolerance), else a short reason."""
    if a is None or b is None:
        return None if a is None and b is None else "one result is missing"
    if a.shape != b.shape:
        return f"shapes {a.shape} vs {b.shape}"
    if a.dtype != b.dtype:
        return f"dtypes {a.dtype} vs {b.dtype}"
    if a.dtype.kind not in "fc":
        return None if np.array_equal(a, b) else "integer results differ"
    for what, fa, fb in (("NaN", np.isnan(a), np.isnan(b)), ("+inf", a == np.inf, b == np.inf),
                         ("-inf", a == -np.inf, b == -np.inf)):
        if not np.array_equal(fa, fb):
            i = tuple(np.argwhere(fa != fb)[0])
            return f"{what} positions differ (first at {i}: {a[i]} vs {b[i]})"
    fin = np.isfinite(a)
    if not fin.any():
        return None
    rtol = 2e-3 if a.dtype == np.float32 else 1e-7
    x, y = a[fin].astype(np.float64), b[fin].astype(np.float64)
    scale = max(scale, float(np.abs(x).max()), 1e-30)
    bad = np.abs(x - y) > rtol * (np.abs(y) + 1e-2 * scale)
    if bad.any():
        i = int(np.argmax(bad))
        return f"values differ: {x[i]} vs {y[i]} (scale {scale:.3g})"
    return None


def _input_scale(case) -> float:
    scale = 0.0
    for spec in list(case["args"]) + list(case["kwargs"].values()):
        if spec[0] == "tensor" and spec[1].dtype.kind == "f" and spec[1].size:
            fin = spec[1][np.isfinite(spec[1])]
            if fin.size:
                scale = max(scale, float(np.abs(fin).max()))
    return scale


def verdict(case: Dict[str, Any], result) -> Optional[str]:
    """None when ``result`` (from ``Worker.run``) is acceptable for ``case``, else why not."""
    kind, payload = result
    if kind != "answer":
        return f"{kind}: {payload}"
    names = sorted(payload)
    for b in names:
        ans = payload[b]
        if ans[0] == "raise" and ans[1] not in ALLOWED_ERRORS:
            return f"{b} raised {ans[1]}: {ans[2]}"
    ref = payload[names[0]]
    from .fuzz_cases import OPS_RANDOM

    for b in names[1:]:
        ans = payload[b]
        if ref[0] != ans[0]:
            ok, bad = (ref, ans) if ref[0] == "ok" else (ans, ref)
            return (f"{names[0]} {'succeeded' if ref[0] == 'ok' else 'raised'}, {b} "
                    f"{'succeeded' if ans[0] == 'ok' else 'raised'}: {bad[1]}: {bad[2]}")
        if ref[0] == "raise":
            if ref[1] != ans[1]:
                return f"{names[0]} raised {ref[1]} ({ref[2]}), {b} raised {ans[1]} ({ans[2]})"
            continue
        if len(ref[1]) != len(ans[1]) or len(ref[2]) != len(ans[2]):
            return f"{names[0]} and {b} returned different numbers of outputs or grads"
        scale = _input_scale(case)
        values_random = case["op"] in OPS_RANDOM
        for i, (x, y) in enumerate(list(zip(ref[1], ans[1])) + list(zip(ref[2], ans[2]))):
            if isinstance(x, tuple) or isinstance(y, tuple):  # huge outputs: shape, dtype
                why = None if x == y else f"{x} vs {y}"
            elif values_random and x is not None and y is not None:
                why = None if (x.shape, x.dtype) == (y.shape, y.dtype) else f"{x.shape} vs {y.shape}"
            else:
                why = _same_values(x, y, scale)
            if why:
                part = f"output {i}" if i < len(ref[1]) else f"grad {i - len(ref[1])}"
                return f"{names[0]} vs {b}, {part}: {why}"
    return None


def describe(case: Dict[str, Any]) -> str:
    """A one-line, reproducible description of a case."""
    def arg(spec):
        if spec[0] == "value":
            return repr(spec[1])
        if spec[0] == "list":
            return "[" + ", ".join(arg(s) for s in spec[1]) + "]"
        a = spec[1]
        head = np.array2string(a.ravel()[:4], precision=3) if a.size else "[]"
        return f"tensor({a.dtype}{list(a.shape)} {head}{'...' if a.size > 4 else ''}, {spec[2]}" \
               f"{', grad' if spec[3] else ''})"
    kw = ", ".join(f"{k}={arg(v)}" for k, v in case["kwargs"].items())
    return f"{case['op']}({', '.join(arg(a) for a in case['args'])}{', ' if kw else ''}{kw})"


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--examples", type=int, default=2000, help="cases to generate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.worker:
        _worker_main()
        return 0
    from .fuzz_cases import sample_cases

    worker, failures = Worker(), 0
    try:
        for n, case in enumerate(sample_cases(args.examples, args.seed)):
            why = verdict(case, worker.run(case))
            if why:
                failures += 1
                print(f"FAIL {describe(case)}\n     {why}", flush=True)
            if (n + 1) % 500 == 0:
                print(f"{n + 1} cases, {failures} failures", file=sys.stderr, flush=True)
    finally:
        worker.stop()
    print(f"{args.examples} cases, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

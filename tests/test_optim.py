"""SGD (momentum, dampening, Nesterov, weight decay), Adam and AdamW: every backend
follows the numpy reference step for step, the reference follows torch.optim's update
rules (written out here), and PyTorch itself when it is installed."""

from __future__ import annotations

import numpy as np
import pytest

import ferrograd as fg
from ferrograd.testing import assert_close

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
]


def _grads(step, shape):
    return np.random.default_rng(step).standard_normal(shape)


def run_optimizer(backend, name, kwargs, dtype=np.float64, steps=5):
    p = fg.nn.Parameter(fg.tensor(np.linspace(-1, 1, 6, dtype=dtype).reshape(2, 3), backend=backend))
    opt = getattr(fg.optim, name)([p], **kwargs)
    for step in range(steps):
        p.grad = fg.tensor(_grads(step, p.shape).astype(dtype), backend=backend)
        opt.step()
    return p.numpy()


def reference(name, kw, steps=5):
    """torch.optim's documented update rules in plain numpy (float64)."""
    p = np.linspace(-1, 1, 6).reshape(2, 3)
    buf, m, v = None, np.zeros_like(p), np.zeros_like(p)
    lr, wd = kw["lr"], kw.get("weight_decay", 0.0)
    for t in range(1, steps + 1):
        g = _grads(t - 1, p.shape)
        if name == "SGD":
            mom, damp = kw.get("momentum", 0.0), kw.get("dampening", 0.0)
            g = g + wd * p
            if mom:
                buf = g.copy() if buf is None else mom * buf + (1 - damp) * g
                g = g + mom * buf if kw.get("nesterov") else buf
            p = p - lr * g
        else:
            b1, b2 = kw.get("betas", (0.9, 0.999))
            eps = kw.get("eps", 1e-8)
            if name == "AdamW":
                p = p * (1 - lr * wd)
            else:
                g = g + wd * p
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p = p - lr / (1 - b1 ** t) * m / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return p


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_optimizer_follows_torch_rules(backend, name, kwargs):
    dtype = np.float32 if backend == "cuda" else np.float64
    got = run_optimizer(backend, name, kwargs, dtype)
    assert_close(got, reference(name, kwargs).astype(dtype), dtype, "reduction")


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_optimizer_matches_pytorch(name, kwargs):
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(2, 3))
    opt = getattr(torch.optim, name)([p], **kwargs)
    for step in range(5):
        p.grad = torch.from_numpy(_grads(step, (2, 3)))
        opt.step()
    assert_close(run_optimizer("numpy", name, kwargs), p.detach().numpy(), np.float64, "reduction")


def test_zero_grad_and_bad_hyperparameters(backend):
    p = fg.nn.Parameter(fg.tensor(np.ones(3, dtype=np.float32), backend=backend))
    opt = fg.optim.SGD([p], lr=0.1)
    (p * p).sum().backward()
    opt.zero_grad()
    assert p.grad is None
    with pytest.raises(ValueError, match="lr"):
        fg.optim.Adam([p], lr=-1.0)
    with pytest.raises(ValueError, match="nesterov|momentum|dampening"):
        fg.optim.SGD([p], lr=0.1, nesterov=True)

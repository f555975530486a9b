"""Modules: parameters and their PyTorch names, state_dict round trips, train/eval,
to(backend), zero_grad, Sequential."""

from __future__ import annotations

import numpy as np
import pytest

import ferrograd as fg
import ferrograd.nn as nn


def model():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.PReLU(3))


def test_named_parameters_follow_pytorch_names():
    names = [n for n, _ in model().named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "3.weight"]


def test_state_dict_round_trip_and_strict_loading(backend):
    fg.manual_seed(1)
    a = model().to(backend)
    fg.manual_seed(2)
    b = model().to(backend)
    b.load_state_dict(a.state_dict())
    x = fg.tensor(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32), backend=backend)
    assert np.array_equal(a(x).numpy(), b(x).numpy())
    sd = a.state_dict()
    sd.pop("0.bias")
    with pytest.raises((KeyError, ValueError), match="0.bias"):
        b.load_state_dict(sd)
    bad = {k: v.numpy() for k, v in a.state_dict().items()}
    bad["0.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="0.weight"):
        b.load_state_dict(bad)


def test_state_dict_loads_into_pytorch():
    torch = pytest.importorskip("torch")
    fg.manual_seed(0)
    m = model()
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3),
                             torch.nn.PReLU(3))
    tm.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in m.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    assert np.allclose(tm(torch.from_numpy(x)).detach().numpy(), m(fg.tensor(x)).numpy(), atol=1e-6)


def test_train_eval_to_and_zero_grad(backend):
    m = model()
    assert m.training and all(c.training for c in m.modules())
    m.eval()
    assert not any(c.training for c in m.modules())
    m.train()
    m.to(backend)
    assert all(p.device == backend for p in m.parameters())
    x = fg.tensor(np.ones((2, 4), np.float32), backend=backend)
    m(x).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_training_lowers_the_loss(backend):
    fg.manual_seed(0)
    m = model().to(backend)
    opt = fg.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((32, 4)).astype(np.float32)
    x = fg.tensor(xs, backend=backend)
    y = (xs @ rng.standard_normal((4, 3))).argmax(axis=1)  # a learnable labelling
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = fg.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]

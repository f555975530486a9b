"""The Tensor API around the ops: default dtypes, dtype conversion, NumPy/DLPack interop,
pickle and deepcopy, repr, creation functions (issue 17's first part)."""

import copy
import pickle

import numpy as np
import pytest

import ferrograd as fg
import ferrograd.nn as nn

from conftest import require_backend


def test_default_dtypes_follow_pytorch():
    assert fg.tensor([1.0, 2.0]).dtype == np.float32  # Python floats: float32
    assert fg.tensor(1.5).dtype == np.float32
    assert fg.tensor(np.array([1.0, 2.0])).dtype == np.float64  # an ndarray keeps float64
    assert fg.tensor([1, 2]).dtype == np.int64
    assert fg.tensor([1.0], dtype=fg.float64).dtype == np.float64
    assert fg.float is fg.float32 and fg.double is fg.float64 and fg.long is fg.int64


def test_to_dtype_is_differentiable_and_to_backend_and_dtype_together(backend):
    x = fg.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)  # float64, numpy
    y = x.to(backend, fg.float32) if backend != "numpy" else x.float()
    assert y.dtype == np.float32 and y.device == backend and y.requires_grad
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1.0, -2.0, 3.0]))
    if backend != "cuda":  # cuda holds float32 only (test_cuda_refuses_float64)
        assert y.double().dtype == np.float64
    n = y.long()
    assert n.dtype == np.int64 and not n.requires_grad and n.tolist() == [1, -2, 3]
    assert x.to(dtype="double") is x  # nothing to do: the same tensor, as PyTorch


def test_cuda_refuses_float64():
    require_backend("cuda")
    with pytest.raises(TypeError):
        fg.tensor([1.0], backend="cuda").double()


def test_numpy_and_dlpack_interop_share_memory_on_the_cpu_backends(cpu_backend):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = fg.from_numpy(a, backend=cpu_backend)
    a[0, 0] = 42.0
    assert t.numpy()[0, 0] == 42.0  # torch.from_numpy shares
    arr = np.asarray(t)
    assert arr.dtype == np.float32 and np.shares_memory(arr, a)
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    d = np.from_dlpack(t)
    assert np.shares_memory(d, a)
    back = fg.from_dlpack(a, backend=cpu_backend)
    assert np.shares_memory(back.numpy(), a)
    with pytest.raises(TypeError, match="array"):
        fg.from_numpy([1.0, 2.0])
    with pytest.raises(TypeError, match="dtype"):
        fg.from_numpy(np.zeros(2, np.complex64))


def test_pickle_and_deepcopy_of_tensors_and_modules(backend):
    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to(backend)
    x = fg.tensor(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32), backend=backend)
    want = model(x).numpy()
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(clone(x).numpy(), want)
        assert isinstance(clone[0].weight, nn.Parameter) and clone[0].weight.requires_grad
        assert clone[0].weight.backend is model[0].weight.backend  # one backend object
        clone[0].weight.data = clone[0].weight.data * 0  # the copy is independent
        np.testing.assert_array_equal(model(x).numpy(), want)
    t = fg.tensor([1.0, 2.0], backend=backend, requires_grad=True)
    (t * t).sum().backward()
    c = copy.deepcopy(t)
    assert c.requires_grad and c.grad.tolist() == [2.0, 4.0] and c.backend is t.backend
    p = pickle.loads(pickle.dumps(t))
    assert p.tolist() == [1.0, 2.0] and p.requires_grad and p.is_leaf
    with pytest.raises(RuntimeError, match="leaves"):
        copy.deepcopy(t * 2)


def test_repr_reads_like_pytorch():
    assert repr(fg.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(fg.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(fg.tensor([0.5], requires_grad=True)) == "tensor([0.5000], requires_grad=True)"
    assert repr(fg.tensor(np.array([1.0]))) == "tensor([1.], dtype=float64)"
    y = fg.tensor([1.0], requires_grad=True) * 2
    assert repr(y).startswith("tensor([2.], grad_fn=<") and repr(y).endswith(">)")
    assert "backend='rust'" in repr(fg.tensor([1.0], backend="rust")) or \
        "rust" not in fg.available_backends()


def test_creation_functions(backend):
    assert fg.arange(5, backend=backend).tolist() == [0, 1, 2, 3, 4]
    assert fg.arange(5, backend=backend).dtype == np.int64
    r = fg.arange(1, 2, 0.25, backend=backend)
    assert r.dtype == np.float32 and r.tolist() == [1.0, 1.25, 1.5, 1.75]
    assert fg.arange(3, 0, -1).tolist() == [3, 2, 1]
    assert fg.linspace(0, 1, 5, backend=backend).tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    e = fg.eye(2, 3, backend=backend)
    assert e.dtype == np.float32 and e.numpy().tolist() == [[1, 0, 0], [0, 1, 0]]
    x = fg.ones(2, 3, backend=backend)
    for fn, value in ((fg.zeros_like, 0.0), (fg.ones_like, 1.0), (fg.empty_like, 0.0)):
        y = fn(x)
        assert y.shape == (2, 3) and y.dtype == x.dtype and y.device == backend
        assert np.all(y.numpy() == value)
    assert np.all(fg.full_like(x, -np.inf).numpy() == -np.inf)
    assert fg.empty(2, 2, backend=backend).shape == (2, 2)
    fg.manual_seed(1)
    a = fg.randint(0, 10, (50,), backend=backend).numpy()
    p = fg.randperm(20, backend=backend).numpy()
    u = fg.rand_like(x).numpy()
    fg.manual_seed(1)
    assert np.array_equal(fg.randint(0, 10, (50,), backend=backend).numpy(), a)
    assert a.dtype == np.int64 and a.min() >= 0 and a.max() < 10
    assert sorted(p.tolist()) == list(range(20)) and p.dtype == np.int64
    assert np.all((u >= 0) & (u < 1)) and fg.randn_like(x).shape == (2, 3)


def test_creation_bad_arguments_raise():
    with pytest.raises(ValueError, match="step"):
        fg.arange(0, 5, 0)
    with pytest.raises(ValueError, match="end"):
        fg.arange(5, 0, 1)
    with pytest.raises(TypeError, match="end"):  # arange(end): the one argument is end
        fg.arange("5")
    with pytest.raises(ValueError, match="start"):
        fg.arange(float("nan"), 3.0)
    with pytest.raises(ValueError, match="steps"):
        fg.linspace(0, 1, -1)
    with pytest.raises(ValueError, match="high"):
        fg.randint(5, 5, (2,))
    with pytest.raises(TypeError, match="size"):
        fg.randint(0, 5)
    with pytest.raises(TypeError, match="input"):
        fg.zeros_like(np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        fg.eye(-1)
    with pytest.raises(TypeError, match="dtype"):
        fg.ones(2).to(np.complex64)


def test_torch_interop_when_installed():
    torch = pytest.importorskip("torch")
    t = fg.tensor([1.0, 2.0, 3.0])
    assert torch.as_tensor(np.asarray(t)).tolist() == [1.0, 2.0, 3.0]
    shared = torch.from_dlpack(t)
    shared[0] = 9.0
    assert t.tolist()[0] == 9.0  # zero copy
    w = torch.ones(2, requires_grad=True)
    assert fg.tensor(w).tolist() == [1.0, 1.0] and fg.tensor(w).dtype == np.float32
    back = fg.from_dlpack(torch.arange(4, dtype=torch.float32))
    assert back.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_module_double_and_float_cast_floating_parameters_and_buffers(cpu_backend):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).to(cpu_backend).double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model[1].running_mean.dtype == np.float64
    assert model[1].num_batches_tracked.dtype == np.int64  # integer buffers stay
    x = fg.tensor(np.ones((2, 3)), backend=cpu_backend)  # float64
    model(x).sum().backward()
    assert model[0].weight.grad.dtype == np.float64
    model.to(cpu_backend, fg.float32)
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert model[0].weight.grad.dtype == np.float32
    with pytest.raises(TypeError, match="dtype"):
        model.to(np.int64)

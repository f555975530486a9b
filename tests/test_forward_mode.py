"""fg.autograd.jvp: forward rules for every op family with one, checked against reverse
mode through <u, J v> == <J^T u, v> on random inputs (numpy and rust, float64), against
central differences, against torch.func.jvp, on cuda against numpy; bad input and ops
without a rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ferrograd as fg
import ferrograd.functional as F
from ferrograd.autograd import Function, checkpoint, jvp

from conftest import require_backend

# name -> (input shapes, f). Inputs are float64 standard normals (positive where noted).
CASES = {
    "add_broadcast": ([(3, 4), (4,)], lambda a, b: a + b),
    "sub": ([(3, 4), (3, 1)], lambda a, b: a - b),
    "mul_broadcast": ([(2, 3, 4), (3, 1)], lambda a, b: a * b),
    "div": ([(3, 4), (3, 4)], lambda a, b: a / (b * b + 1.0)),
    "pow": ([(3, 4), (3, 4)], lambda a, b: (a * a + 0.5) ** b),
    "neg_exp_log": ([(5,)], lambda a: F.log(F.exp(-a) + 1.0)),
    "relu": ([(4, 5)], F.relu),
    "leaky_relu": ([(4, 5)], lambda a: F.leaky_relu(a, 0.2)),
    "prelu": ([(2, 3, 4), (3,)], F.prelu),
    "prelu_single": ([(2, 3), (1,)], F.prelu),
    "sigmoid": ([(4, 5)], F.sigmoid),
    "tanh": ([(4, 5)], F.tanh),
    "gelu": ([(4, 5)], F.gelu),
    "gelu_tanh": ([(4, 5)], lambda a: F.gelu(a, approximate="tanh")),
    "silu_swish": ([(4, 5)], lambda a: F.silu(a) + F.swish(a, 1.7)),
    "math_unary": ([(4, 5)], lambda a: F.sin(a) * F.cos(a) + F.sqrt(F.abs(a) + 1.0) - F.rsqrt(a * a + 1.0)),
    "maximum_clamp": ([(4, 5), (5,)], lambda a, b: F.maximum(a, b) + F.minimum(a, b) * F.clamp(a, -0.5, 0.5)),
    "sum_mean": ([(2, 3, 4)], lambda a: a.sum(dim=1) * a.mean(dim=(0, 2), keepdim=True).sum()),
    "sum_all": ([(3, 4)], lambda a: F.sum(a * a)),
    "layout": ([(2, 3, 4)], lambda a: F.flatten(F.permute(a, (2, 0, 1)), 1) * 2.0),
    "transpose_reshape": ([(2, 6)], lambda a: F.transpose(a.reshape(3, 4), 0, 1)),
    "expand": ([(3, 1)], lambda a: F.expand(a, (2, 3, 4))),
    "matmul": ([(3, 4), (4, 2)], lambda a, b: a @ b),
    "matmul_batched": ([(2, 3, 4), (2, 4, 5)], lambda a, b: a @ b),
    "matmul_vec": ([(4,), (4, 3)], lambda a, b: a @ b),
    "linear": ([(5, 4), (3, 4), (3,)], F.linear),
    "linear_3d_nobias": ([(2, 5, 4), (3, 4)], F.linear),
    "softmax": ([(3, 5)], lambda a: F.softmax(a, dim=-1)),
    "softmax_dim0": ([(3, 5)], lambda a: F.softmax(a, dim=0)),
    "log_softmax": ([(3, 5)], lambda a: F.log_softmax(a, dim=1)),
    "mse_mean": ([(3, 4), (3, 4)], F.mse_loss),
    "mse_none": ([(3, 4), (3, 4)], lambda a, b: F.mse_loss(a, b, reduction="none")),
    "cross_entropy": ([(4, 5)], lambda a: F.cross_entropy(a, np.array([0, 4, 2, 2]))),
    "cross_entropy_none": ([(4, 5)], lambda a: F.cross_entropy(a, np.array([1, 3, 0, 4]), reduction="none")),
    "avg_pool": ([(2, 2, 5, 6)], lambda a: F.avg_pool2d(a, 2, stride=1, padding=1)),
    "adaptive_avg_pool": ([(2, 3, 5, 7)], lambda a: F.adaptive_avg_pool2d(a, (2, 3))),
    "max_pool": ([(2, 2, 5, 6)], lambda a: F.max_pool2d(a, 3, stride=2, padding=1)),
    "max_pool_3d_input": ([(2, 5, 5)], lambda a: F.max_pool2d(a, 2)),
    "adaptive_max_pool": ([(1, 2, 5, 7)], lambda a: F.adaptive_max_pool2d(a, 3)),
    "dropout": ([(6, 7)], lambda a: F.dropout(a, 0.3, training=True)),
    "layer_norm": ([(3, 2, 5), (2, 5), (2, 5)], lambda a, w, b: F.layer_norm(a, (2, 5), w, b, 1e-3)),
    "layer_norm_plain": ([(4, 6)], lambda a: F.layer_norm(a, (6,))),
    "group_norm": ([(2, 4, 3), (4,), (4,)], lambda a, w, b: F.group_norm(a, 2, w, b)),
    "instance_norm": ([(2, 3, 4, 2)], lambda a: F.instance_norm(a)),
    "batch_norm_train": ([(4, 3, 2), (3,), (3,)],
                         lambda a, w, b: F.batch_norm(a, None, None, w, b, training=True)),
    "batch_norm_eval": ([(4, 3)], lambda a: F.batch_norm(
        a, fg.tensor(np.array([0.1, -0.2, 0.3]), backend=a.backend.name),
        fg.tensor(np.array([1.5, 0.5, 2.0]), backend=a.backend.name), training=False)),
    "checkpointed_mlp": ([(3, 4), (5, 4)], lambda a, w: checkpoint(lambda x: F.tanh(F.linear(x, w)), a)),
}


def _inputs(shapes, backend, rng, grad=False):
    return [fg.tensor(rng.standard_normal(s), backend=backend, requires_grad=grad) for s in shapes]


def _dot(xs, ys):
    return sum(float(np.sum(x.numpy() * y.numpy())) for x, y in zip(xs, ys))


@pytest.mark.parametrize("name", sorted(CASES))
@given(seed=st.integers(0, 2**32 - 1))
def test_jvp_is_the_transpose_of_vjp(cpu_backend, name, seed):
    shapes, f = CASES[name]
    rng = np.random.default_rng(seed)
    primals = _inputs(shapes, cpu_backend, rng)
    tangents = _inputs(shapes, cpu_backend, rng)
    fg.manual_seed(seed % 1000)
    out, jv = jvp(f, tuple(primals), tuple(tangents))
    assert jv.shape == out.shape and jv.dtype == out.dtype
    # reverse mode on the same function, same dropout stream
    leaves = [fg.tensor(p.numpy(), backend=cpu_backend, requires_grad=True) for p in primals]
    fg.manual_seed(seed % 1000)
    out2 = f(*leaves)
    assert np.array_equal(out.numpy(), out2.numpy())
    u = fg.tensor(rng.standard_normal(out.shape), backend=cpu_backend)
    out2.backward(u)
    grads = [x.grad if x.grad is not None else fg.zeros(*x.shape, backend=cpu_backend, dtype=np.float64)
             for x in leaves]
    lhs, rhs = _dot([u], [jv]), _dot(grads, tangents)
    assert abs(lhs - rhs) <= 1e-9 * (1 + abs(lhs) + abs(rhs)), (lhs, rhs)


@pytest.mark.parametrize("name", ["pow", "gelu", "log_softmax", "linear", "prelu", "cross_entropy", "avg_pool",
                                  "layer_norm", "group_norm", "batch_norm_train"])
def test_jvp_matches_central_differences(cpu_backend, name):
    shapes, f = CASES[name]
    rng = np.random.default_rng(1)
    primals = _inputs(shapes, cpu_backend, rng)
    tangents = _inputs(shapes, cpu_backend, rng)
    _, jv = jvp(f, tuple(primals), tuple(tangents))
    h = 1e-6

    def at(sign):
        xs = [fg.tensor(p.numpy() + sign * h * t.numpy(), backend=cpu_backend) for p, t in zip(primals, tangents)]
        return f(*xs).numpy()

    fd = (at(1) - at(-1)) / (2 * h)
    np.testing.assert_allclose(jv.numpy(), fd, rtol=1e-5, atol=1e-6)


def test_several_primals_outputs_and_constant_outputs():
    rng = np.random.default_rng(4)
    a, b = _inputs([(3,), (3,)], "numpy", rng)
    va, vb = _inputs([(3,), (3,)], "numpy", rng)
    c = fg.tensor(np.ones(3))
    (o1, o2, o3), (t1, t2, t3) = jvp(lambda x, y: (x * y, F.exp(x), c * 2.0), (a, b), (va, vb))
    np.testing.assert_allclose(t1.numpy(), va.numpy() * b.numpy() + a.numpy() * vb.numpy())
    np.testing.assert_allclose(t2.numpy(), np.exp(a.numpy()) * va.numpy())
    assert np.array_equal(t3.numpy(), np.zeros(3))  # independent of the primals
    # outside jvp no tangent leaks: plain ops work as before
    assert not hasattr(o1, "_tangent") and not hasattr(F.exp(a), "_tangent")


def test_reverse_mode_still_records_inside_jvp():
    x = fg.tensor(np.array([0.5, -1.0]), requires_grad=True)
    out, _ = jvp(lambda t: (F.tanh(t) ** 2.0).sum(), (x,), (fg.tensor(np.ones(2)),))
    out.backward()
    assert x.grad is None  # jvp works on copies of the primals; the copies got the grads


def test_nested_jvp_is_refused():
    # one tangent per tensor: forward over forward would silently drop the outer tangent
    x = fg.tensor(np.array([0.3, 1.2]))
    one = fg.tensor(np.ones(2))

    def first(t):
        return jvp(lambda s: F.tanh(s) * s, (t,), (one,))[1]

    with pytest.raises(NotImplementedError, match="nested"):
        jvp(first, (x,), (one,))
    # the failed call left forward mode off
    assert not fg.autograd.engine.forward_ad_enabled()


def test_matches_torch_func_jvp():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    xv, wv, bv, vx, vw, vb = (rng.standard_normal(s) for s in [(4, 5), (3, 5), (3,), (4, 5), (3, 5), (3,)])

    def fg_f(x, w, b):
        return F.log_softmax(F.gelu(F.linear(x, w, b)), dim=1)

    def t_f(x, w, b):
        return torch.log_softmax(torch.nn.functional.gelu(torch.nn.functional.linear(x, w, b)), dim=1)

    t = torch.from_numpy
    tout, tj = torch.func.jvp(t_f, (t(xv), t(wv), t(bv)), (t(vx), t(vw), t(vb)))
    out, j = jvp(fg_f, tuple(fg.tensor(a) for a in (xv, wv, bv)), tuple(fg.tensor(a) for a in (vx, vw, vb)))
    np.testing.assert_allclose(out.numpy(), tout.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(j.numpy(), tj.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["mul_broadcast", "math_unary", "maximum_clamp", "gelu", "linear", "log_softmax", "cross_entropy",
                                  "max_pool", "avg_pool", "prelu", "sum_mean", "dropout",
                                  "layer_norm", "group_norm", "batch_norm_train"])
def test_cuda_matches_numpy(name):
    require_backend("cuda")
    shapes, f = CASES[name]
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    tans = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    res = {}
    for be in ("numpy", "cuda"):
        fg.manual_seed(3)
        res[be] = jvp(f, tuple(fg.tensor(a, backend=be) for a in arrays),
                      tuple(fg.tensor(a, backend=be) for a in tans))
    np.testing.assert_allclose(res["cuda"][0].numpy(), res["numpy"][0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res["cuda"][1].numpy(), res["numpy"][1].numpy(), rtol=1e-4, atol=1e-5)


def test_op_without_forward_rule_is_named():
    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, gy):
            (x,) = ctx.saved_arrays
            return 3 * x * x * gy

    x = fg.tensor(np.ones(3))
    assert np.array_equal(Cube.apply(x).numpy(), np.ones(3))  # reverse-mode use unaffected
    with pytest.raises(NotImplementedError, match="Cube has no forward-mode rule"):
        jvp(lambda t: Cube.apply(t), (x,), (x,))


def test_bad_input():
    x = fg.tensor(np.ones(3))
    with pytest.raises(TypeError, match="f: expected a callable"):
        jvp(None, (x,), (x,))
    with pytest.raises(ValueError, match="expected 1 tangents"):
        jvp(F.exp, (x,), (x, x))
    with pytest.raises(ValueError, match=r"tangents\[0\]: expected shape \(3,\)"):
        jvp(F.exp, (x,), (fg.tensor(np.ones(2)),))
    with pytest.raises(ValueError, match="dtype float64"):
        jvp(F.exp, (x,), (fg.tensor(np.ones(3, np.float32)),))
    with pytest.raises(TypeError, match="primals: expected a Tensor"):
        jvp(F.exp, np.ones(3), (x,))
    with pytest.raises(TypeError, match=r"primals\[0\]: expected a float tensor"):
        jvp(F.exp, (fg.tensor(np.arange(3)),), (fg.tensor(np.arange(3)),))
    with pytest.raises(TypeError, match="f's result"):
        jvp(lambda t: 3.0, (x,), (x,))


# Which ops have which derivative rules: each Function class declares its own (jvp and
# backward_graph beside forward and backward; None where it has none). The README lists
# exactly these; this pins the lists so that a rule added or dropped updates both.
NO_JVP = {"Attention", "Conv2d", "RNN", "Checkpoint"}
WITH_GRAPH = {"Binary", "Unary", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Swish", "Sum",
              "Reshape", "Permute", "Expand", "Matmul", "Linear", "ToDtype"}


def _function_classes():
    import importlib
    import pkgutil

    import ferrograd.autograd.checkpoint  # noqa: F401
    import ferrograd.nn  # noqa: F401
    import ferrograd.ops as ops
    from ferrograd.autograd.engine import Function

    for m in pkgutil.iter_modules(ops.__path__):
        importlib.import_module(f"ferrograd.ops.{m.name}")
    seen, todo = set(), [Function]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("ferrograd.") and sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return seen


def test_each_op_declares_its_rules_in_its_own_class():
    classes = _function_classes()
    assert {c.__name__ for c in classes if c.jvp is None} == NO_JVP
    assert {c.__name__ for c in classes if c.backward_graph is not None} == WITH_GRAPH


def test_an_op_without_a_rule_names_itself():
    x = fg.tensor(np.ones((1, 1, 3, 3), np.float32))
    w = fg.tensor(np.ones((1, 1, 2, 2), np.float32))
    with pytest.raises(NotImplementedError, match="Conv2d has no forward-mode rule"):
        fg.autograd.jvp(lambda a: F.conv2d(a, w), (x,), (x,))
    g = fg.tensor(np.ones(3, np.float32), requires_grad=True)
    y = F.gelu(g).sum()
    with pytest.raises(NotImplementedError, match="Gelu has no differentiable"):
        y.backward(create_graph=True)

"""Issue 15's unclear errors and edge semantics: each bad call raises the class PyTorch
users expect, with a message naming the argument, on every CPU backend alike."""

import numpy as np
import pytest

import ferrograd as fg
import ferrograd.functional as F
import ferrograd.nn as nn

BACKENDS = [b for b in ("numpy", "rust") if b in fg.available_backends()]


def t(a, backend, grad=False):
    return fg.tensor(np.asarray(a, np.float32), backend=backend, requires_grad=grad)


@pytest.mark.parametrize("call, name", [
    (lambda: F.relu(1.5), "input"), (lambda: F.gelu([1.0]), "input"),
    (lambda: F.softmax(1.5, -1), "input"), (lambda: F.layer_norm(1.5, (2,)), "input"),
    (lambda: F.max_pool2d(np.ones((1, 1, 2, 2)), 2), "input"),
    (lambda: F.mse_loss(1.0, fg.tensor(np.ones(2, np.float32))), "input"),
])
def test_a_non_tensor_input_is_a_type_error_naming_it(call, name):
    with pytest.raises(TypeError, match=f"^{name}: expected a Tensor, got"):
        call()


def test_layer_norm_shape_must_be_ints():
    with pytest.raises(TypeError, match="normalized_shape"):
        nn.LayerNorm(1.5)


def test_a_mixed_backend_op_says_which_argument_is_where():
    if len(BACKENDS) < 2:
        pytest.skip("needs two backends")
    with pytest.raises(ValueError, match="tensor argument 2 on 'rust'"):
        t([1.0], "numpy") + t([1.0], "rust")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_float64_seed_gradient_is_cast_to_the_output_dtype(backend):
    x = t([1.0, 2.0], backend, grad=True)
    (x * 3).backward(fg.tensor(np.ones(2), backend=backend))  # float64 seed, as PyTorch allows
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dim", [0, -1, [0], (-1,)])
def test_reductions_of_a_0d_tensor_take_dim_0_and_minus_1(backend, dim):
    x = t(2.5, backend, grad=True)
    y = x.sum(dim=dim, keepdim=True) + x.mean(dim=dim)
    y.backward()
    assert y.shape == () and y.item() == 5.0 and x.grad.item() == 2.0
    with pytest.raises(ValueError, match="dim"):
        x.sum(dim=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
def test_softmax_of_an_empty_tensor_is_empty(backend, fn):
    assert fn(t(np.zeros((0, 2)), backend), 0).shape == (0, 2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call", [
    lambda x: F.max_pool2d(x, 1, dilation=2**63), lambda x: F.avg_pool2d(x, 2, stride=2**63),
    lambda x: F.adaptive_avg_pool2d(x, 2**63),
    lambda x: F.conv2d(x, fg.tensor(np.ones((1, 1, 1, 1), np.float32), backend=x.backend.name),
                       stride=2**63),
])
def test_sizes_past_int64_are_value_errors(backend, call):
    with pytest.raises(ValueError, match="2\\*\\*63"):
        call(t(np.ones((1, 1, 4, 4)), backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_kernel_far_larger_than_the_input_pools_what_it_covers(backend):
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    y = F.avg_pool2d(t(x, backend), 10**6, ceil_mode=True)  # numpy used to pad to 4 TB
    np.testing.assert_allclose(y.numpy().ravel(), [x.sum() / 12])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_windows_of_2_62_with_padding_2_61_pool_what_they_cover(backend, kind):
    # rust used to walk each window from its first position (a 2**62-step loop: a hang),
    # numpy padded to 2**61 rows, cuda truncated the count to int (an empty window)
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    tx = t(x, backend, grad=True)
    kw = {"count_include_pad": False} if kind == "avg" else {}
    y = getattr(F, f"{kind}_pool2d")(tx, 2**62, stride=2**62, padding=2**61, ceil_mode=True, **kw)
    y.sum().backward()
    want = x.mean() if kind == "avg" else x.max()
    np.testing.assert_allclose(y.numpy().ravel(), [want], rtol=1e-6)
    gx = np.full_like(x, 1 / 12) if kind == "avg" else (x == x.max()).astype(np.float32)
    np.testing.assert_allclose(tx.grad.numpy(), gx, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pow_gradient_follows_pytorch_at_zero(backend):
    a, b = t([0.0, 0.0, -2.0], backend, grad=True), t([2.0, -1.0, 0.5], backend, grad=True)
    (a ** b).sum().backward()
    gb = b.grad.numpy()
    assert gb[0] == 0.0 and gb[1] == -np.inf and np.isnan(gb[2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_overflowing_float32_products_sum_exactly(backend):
    # 1e20 * 1e20 and 1e20 * -2e20 both overflow float32; their exact sum is -1e40: -inf,
    # whatever order a BLAS takes (+inf first would stay +inf under FMA)
    x = t([[1e20, 1e20]], backend)
    w = t([[1e20, -2e20], [-2e20, 1e20]], backend)
    np.testing.assert_array_equal(F.linear(x, w).numpy(), [[-np.inf, -np.inf]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_norm_weights_near_float32_max_follow_the_reference(backend):
    # weight * rstd overflows float32; ((x - mean) * rstd) * weight + bias does not (numpy
    # computes it in float64): the rust kernels must not fold the two into an inf scale
    x = np.array([1e-40, 0.32, 0.5, 0.52], np.float32).reshape(2, 1, 2, 1)
    args = [fg.tensor(np.array(v, np.float32), backend=backend) for v in ([0.4], [0.353], [3e38], [1.0])]
    y = F.batch_norm(t(x, backend), args[0], args[1], weight=args[2], bias=args[3], training=False)
    ref = (x.astype(np.float64) - 0.4) / np.sqrt(0.353 + 1e-5) * 3e38 + 1.0
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(y.numpy(), ref.astype(np.float32), rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opt", [lambda p: fg.optim.SGD(p, lr=0.1), lambda p: fg.optim.SGD(p, lr=0.1, momentum=0.9),
                                 lambda p: fg.optim.Adam(p, lr=0.1)])
def test_an_infinite_weight_without_weight_decay_stays_infinite(backend, opt):
    p = t([np.inf, 1.0], backend, grad=True)
    o = opt([p])
    p.grad = fg.tensor(np.ones(2, np.float32), backend=backend)
    o.step()
    assert p.numpy()[0] == np.inf  # not 0 * inf = NaN from a zero weight decay


@pytest.mark.parametrize("call, cls, match", [
    (lambda p: fg.optim.Adam([p], betas=(0.9,)), ValueError, "betas"),
    (lambda p: fg.optim.SGD([{"lr": 0.1}]), ValueError, "params"),
    (lambda p: fg.optim.Adam(p), TypeError, "iterable"),
    (lambda p: fg.optim.SGD(3), TypeError, "iterable"),
])
def test_optimizer_arguments_fail_as_in_pytorch(call, cls, match):
    with pytest.raises(cls, match=match):
        call(t([1.0], "numpy", grad=True))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["transposed", "strided", "unaligned", "readonly"])
def test_optimizer_steps_on_unusual_layouts_agree_with_numpy(backend, layout):
    from ferrograd.testing.fuzz import _with_layout

    base = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5

    def run(be):
        p = fg.Tensor(fg.get_backend(be).from_numpy(_with_layout(base, layout)), fg.get_backend(be),
                      requires_grad=True)
        o = fg.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
        for _ in range(2):
            p.grad = fg.tensor(np.ones((2, 3), np.float32), backend=be)
            o.step()
        return p.numpy()

    if layout == "readonly":
        with pytest.raises(ValueError, match="read-only"):
            run(backend)
        return
    np.testing.assert_allclose(run(backend), run("numpy"), rtol=1e-6)


@pytest.mark.skipif("rust" not in fg.available_backends(), reason="native runs on the rust tape")
@pytest.mark.parametrize("x_dtype, loss, tshape, cls, match", [
    (np.int64, "mse", (4, 3), TypeError, "input: expected a float32 or float64"),
    (np.float64, "mse", (4, 3), TypeError, "weight: expected dtype float64 like input"),
    (np.float32, "mse", (3, 4), ValueError, r"target: expected the input's shape \(4, 3\), got \(3, 4\)"),
    (np.float32, "mse", (12,), ValueError, "target: expected the input's shape"),
    (np.float32, "cross_entropy", (4, 1), ValueError, r"target: expected shape \(4,\), got \(4, 1\)"),
    (np.float32, "cross_entropy", (), ValueError, r"target: expected shape \(4,\), got \(\)"),
])
def test_native_checks_inputs_and_targets_as_the_python_engine(x_dtype, loss, tshape, cls, match):
    from ferrograd.native import NativeSequential

    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3)).to("rust")
    x = np.ones((4, 2), x_dtype)
    target = np.zeros(tshape, np.int64 if loss == "cross_entropy" else np.float32)
    fn = F.cross_entropy if loss == "cross_entropy" else F.mse_loss
    with pytest.raises(cls, match=match):  # the Python engine
        fn(model(fg.tensor(x, backend="rust")), target)
    with pytest.raises(cls, match=match):
        NativeSequential(model, loss=loss).step(x, target, 0.1)


@pytest.mark.skipif("rust" not in fg.available_backends(), reason="native runs on the rust tape")
def test_native_takes_an_unbatched_sample_as_the_python_engine():
    from ferrograd.native import NativeSequential

    x, t = np.array([1.0, 2.0, -1.0], np.float32), np.array([0.5, 0.0, -1.0], np.float32)

    def model():
        fg.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).to("rust")

    want = F.mse_loss(model()(fg.tensor(x, backend="rust")), fg.tensor(t, backend="rust")).item()
    assert NativeSequential(model(), loss="mse").step(x, t, 0.1) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match=r"input: expected logits of shape \(N, C\)"):
        F.cross_entropy(model()(fg.tensor(x, backend="rust")), np.array(1))
    with pytest.raises(ValueError, match=r"input: expected logits of shape \(N, C\)"):
        NativeSequential(model(), loss="cross_entropy").step(x, np.array(1), 0.1)

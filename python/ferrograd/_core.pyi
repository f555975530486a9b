"""Type stub of ``ferrograd._core``, the PyO3 extension built from ``rust_core/src/python``.

Hand-written: ``tests/test_core_stub.py`` checks that it lists every function of the
built module with PyO3's parameter names, order and defaults.

Every kernel takes float32 or float64 numpy arrays; the first float operand decides the
dtype and every other float operand must share it (``_F`` below), and outputs have that
dtype. Errors (``FerroError`` in Rust, converted in ``python/mod.rs``): ``TypeError`` for
a non-float array or a dtype that differs from the first operand's, ``ValueError`` for a
bad shape or value (the message names the argument, the expected and the received). A
Rust panic is a bug and surfaces as ``RuntimeError``. Integer arguments are unsigned
where the Rust takes ``usize``/``u64``: a negative one raises ``OverflowError``.
"""

from collections.abc import Sequence
from typing import Literal, NoReturn, TypeAlias, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

# the dtype of a call: its first float operand's, shared by the other operands and outputs
_F = TypeVar("_F", np.float32, np.float64)

_Gelu: TypeAlias = Literal["none", "tanh"]
_BinaryOp: TypeAlias = Literal["add", "sub", "mul", "div", "pow", "maximum", "minimum", "clamp_min", "clamp_max"]
_UnaryOp: TypeAlias = Literal["neg", "exp", "log", "abs", "sqrt", "rsqrt", "sin", "cos"]
_Reduction: TypeAlias = Literal["mean", "sum", "none"]
_ConvAlgo: TypeAlias = Literal["im2col", "naive", "winograd", "winograd2", "winograd4", "fft"]
# one spatial axis of a pooling window table, (start, count, step, factor): backends/_pool.table
_Table: TypeAlias = tuple[Sequence[int], Sequence[int], int, Sequence[int]]
# an (h, w) pair of convolution geometry
_Pair: TypeAlias = tuple[int, int]
# a native layer spec: (kind, numeric parameters), as ferrograd.native builds them
_LayerSpec: TypeAlias = tuple[str, Sequence[float]]

__version__: str

# --------------------------------------------------------------------------- activation

def relu_forward(x: NDArray[_F]) -> NDArray[_F]:
    """max(x, 0) elementwise; TypeError for a non-float array."""

def relu_backward(x: NDArray[_F], gy: NDArray[_F]) -> NDArray[_F]:
    """gy where x > 0, else 0; TypeError on dtype mismatch, ValueError if gy's shape is not x's."""

def relu_forward_mask(x: NDArray[_F]) -> tuple[NDArray[_F], NDArray[np.uint8]]:
    """(relu_forward(x), mask): the mask is x > 0 packed 8 to a byte, least significant bit first (numpy's packbits(x > 0, bitorder="little")), ceil(n / 8) bytes."""

def relu_backward_mask(mask: NDArray[np.uint8], gy: NDArray[_F]) -> NDArray[_F]:
    """gy where the mask's bit is set, else 0; TypeError unless mask is a 1-D uint8 array, ValueError unless it holds ceil(gy.size / 8) bytes."""

def sigmoid_forward(x: NDArray[_F]) -> NDArray[_F]:
    """1 / (1 + exp(-x)) elementwise; TypeError for a non-float array."""

def sigmoid_backward(y: NDArray[_F], gy: NDArray[_F]) -> NDArray[_F]:
    """gy * y (1 - y) from the forward's output y; TypeError on dtype mismatch, ValueError if gy's shape is not y's."""

def tanh_forward(x: NDArray[_F]) -> NDArray[_F]:
    """tanh(x) elementwise; TypeError for a non-float array."""

def tanh_backward(y: NDArray[_F], gy: NDArray[_F]) -> NDArray[_F]:
    """gy * (1 - y^2) from the forward's output y; TypeError on dtype mismatch, ValueError if gy's shape is not y's."""

def leaky_relu_forward(x: NDArray[_F], negative_slope: float) -> NDArray[_F]:
    """x where x > 0, else negative_slope * x; TypeError for a non-float array."""

def leaky_relu_backward(x: NDArray[_F], gy: NDArray[_F], negative_slope: float) -> NDArray[_F]:
    """gy where x > 0, else negative_slope * gy; TypeError on dtype mismatch, ValueError if gy's shape is not x's."""

def leaky_relu_forward_mask(x: NDArray[_F], negative_slope: float) -> tuple[NDArray[_F], NDArray[np.uint8]]:
    """(leaky_relu_forward(x, negative_slope), the packed mask of x > 0) as relu_forward_mask."""

def leaky_relu_backward_mask(mask: NDArray[np.uint8], gy: NDArray[_F], negative_slope: float) -> NDArray[_F]:
    """gy where the mask's bit is set, else negative_slope * gy; errors as relu_backward_mask."""

def swish_forward(x: NDArray[_F], beta: float) -> NDArray[_F]:
    """x * sigmoid(beta x) elementwise; TypeError for a non-float array."""

def swish_backward(x: NDArray[_F], gy: NDArray[_F], beta: float) -> NDArray[_F]:
    """gy times swish's derivative at x; TypeError on dtype mismatch, ValueError if gy's shape is not x's."""

def gelu_forward(x: NDArray[_F], approximate: _Gelu) -> NDArray[_F]:
    """GELU, exact (erf) or tanh-approximated as PyTorch; ValueError for another approximate, TypeError for a non-float array."""

def gelu_backward(x: NDArray[_F], gy: NDArray[_F], approximate: _Gelu) -> NDArray[_F]:
    """gy times GELU's derivative at x; ValueError for another approximate or gy's shape, TypeError on dtype mismatch."""

def prelu_forward(x: NDArray[_F], weight: NDArray[_F]) -> NDArray[_F]:
    """x where x > 0, else alpha * x, one alpha per channel (axis 1) or one shared; ValueError if weight is not 1-D or its length fits neither."""

def prelu_backward(
    x: NDArray[_F], weight: NDArray[_F], gy: NDArray[_F]
) -> tuple[NDArray[_F], NDArray[_F]]:
    """(gx, gweight) of prelu_forward; ValueError for a bad weight or gy shape, TypeError on dtype mismatch."""

# -------------------------------------------------------------------------- elementwise

def binary_forward(op: _BinaryOp, a: NDArray[_F], b: NDArray[_F]) -> NDArray[_F]:
    """a op b with numpy broadcasting; ValueError for an unknown op or shapes that do not broadcast, TypeError on dtype mismatch."""

def binary_backward(
    op: _BinaryOp, a: NDArray[_F], b: NDArray[_F], gy: NDArray[_F]
) -> tuple[NDArray[_F], NDArray[_F]]:
    """(ga, gb) of binary_forward, each summed back to its operand's shape; ValueError for an unknown op or bad shapes, TypeError on dtype mismatch."""

def unary_forward(op: _UnaryOp, x: NDArray[_F]) -> NDArray[_F]:
    """-x, exp, log, abs, sqrt, rsqrt, sin or cos elementwise; ValueError for an unknown op, TypeError for a non-float array."""

def unary_backward(op: _UnaryOp, x: NDArray[_F], gy: NDArray[_F]) -> NDArray[_F]:
    """gy times the op's derivative at x; ValueError for an unknown op or gy's shape, TypeError on dtype mismatch."""

# ----------------------------------------------------------------------------- indexing

def gather_strided(x: NDArray[_F], shape: Sequence[int], strides: Sequence[int], offset: int) -> NDArray[_F]:
    """A new array of shape holding x.flat[offset + sum_d i_d strides[d]] (x read row-major); ValueError if the view reaches past x."""

def copy_strided(dst: NDArray[_F], src: NDArray[_F], strides: Sequence[int], offset: int) -> None:
    """Write src into the view (src.shape, strides, offset) of the C-contiguous dst in place; ValueError if the view reaches past dst or names a position twice."""

# ---------------------------------------------------------------------------- reduction

def sum_forward(x: NDArray[_F], axes: Sequence[int], keepdims: bool) -> NDArray[_F]:
    """x summed over axes (kept as size 1 with keepdims); ValueError unless axes are sorted, unique and below x.ndim."""

def sum_to_shape(g: NDArray[_F], shape: Sequence[int]) -> NDArray[_F]:
    """g summed over the axes broadcasting added or stretched, to shape; ValueError if shape does not broadcast to g's."""

# ------------------------------------------------------------------------------ softmax

def softmax_forward(x: NDArray[_F]) -> NDArray[_F]:
    """softmax over the last axis; TypeError for a non-float array."""

def softmax_backward(y: NDArray[_F], gy: NDArray[_F]) -> NDArray[_F]:
    """gx of softmax from its output y; ValueError if gy's shape is not y's, TypeError on dtype mismatch."""

def log_softmax_forward(x: NDArray[_F]) -> NDArray[_F]:
    """log_softmax over the last axis; TypeError for a non-float array."""

def log_softmax_backward(y: NDArray[_F], gy: NDArray[_F]) -> NDArray[_F]:
    """gx of log_softmax from its output y; ValueError if gy's shape is not y's, TypeError on dtype mismatch."""

# ------------------------------------------------------------------------------- linear

def matmul(
    a: NDArray[_F], b: NDArray[_F], transpose_a: bool = False, transpose_b: bool = False
) -> NDArray[_F]:
    """op(a) @ op(b) for 2-D or batched 3-D operands (op transposes the last two axes when asked); ValueError for bad ranks or inner sizes."""

def linear_forward(x: NDArray[_F], weight: NDArray[_F], bias: NDArray[_F] | None = None) -> NDArray[_F]:
    """x (N, in) @ weight (out, in)^T + bias (out,); ValueError for bad shapes, TypeError on dtype mismatch."""

def linear_backward(
    x: NDArray[_F], weight: NDArray[_F], gy: NDArray[_F], has_bias: bool
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F] | None]:
    """(gx, gweight, gbias or None) of linear_forward; ValueError for bad shapes, TypeError on dtype mismatch."""

# --------------------------------------------------------------------------------- loss

def mse_loss_forward(x: NDArray[_F], target: NDArray[_F], reduction: _Reduction) -> NDArray[_F]:
    """(x - target)^2, reduced (0-d) or elementwise ('none'); ValueError for another reduction or target's shape, TypeError on dtype mismatch."""

def mse_loss_backward(
    x: NDArray[_F], target: NDArray[_F], gy: NDArray[_F], reduction: _Reduction
) -> NDArray[_F]:
    """gx of mse_loss_forward for its output gradient gy; ValueError for another reduction or bad shapes, TypeError on dtype mismatch."""

def cross_entropy_forward(
    logits: NDArray[_F], target: NDArray[np.int64], reduction: _Reduction
) -> NDArray[_F]:
    """cross entropy of logits (N, C) against int64 class indices (N,), 0-d or (N,) for 'none'; ValueError for a bad shape, class or reduction, TypeError if target is not int64."""

def cross_entropy_backward(
    logits: NDArray[_F], target: NDArray[np.int64], gy: NDArray[_F], reduction: _Reduction
) -> NDArray[_F]:
    """glogits (N, C) of cross_entropy_forward; ValueError for a bad shape, class or reduction, TypeError if target is not int64."""

# ---------------------------------------------------------------------------- optimizer

def sgd_step(
    param: NDArray[_F],
    grad: NDArray[_F],
    momentum_buffer: NDArray[_F] | None,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    first_step: bool,
) -> None:
    """One torch.optim.SGD step, updating param and momentum_buffer in place; TypeError if either is not a writable array of grad's dtype, ValueError if not C-contiguous or sizes differ."""

def adam_step(
    param: NDArray[_F],
    grad: NDArray[_F],
    exp_avg: NDArray[_F],
    exp_avg_sq: NDArray[_F],
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
) -> None:
    """One Adam (decoupled: AdamW) step, updating param and both moments in place; TypeError if one is not writable or of param's dtype, ValueError if not C-contiguous or sizes differ."""

# ------------------------------------------------------------------------------ runtime

def _debug_panic() -> NoReturn:
    """Panics inside a kernel on purpose (tests): always raises RuntimeError."""

def num_threads() -> int:
    """Threads in rayon's pool the kernels use (RAYON_NUM_THREADS before import changes it)."""

def buffer_cache_info() -> dict[str, int]:
    """The cache of large freed buffers (rust_core/src/buffer_cache.rs): cached_bytes, cached_blocks, limit_bytes, hits, misses."""

def set_buffer_cache_limit(limit_bytes: int) -> None:
    """Byte limit of the cached free buffers (default 256 MiB; 0 turns caching off); frees what is over it."""

def empty_buffer_cache() -> None:
    """Returns every cached free buffer to the system."""

# -------------------------------------------------------------------------------- norm

def layer_norm_forward(
    x: NDArray[_F],
    weight: NDArray[_F] | None,
    bias: NDArray[_F] | None,
    normalized_ndim: int,
    eps: float,
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F]]:
    """(y, mean, rstd) of layer_norm over the last normalized_ndim axes, mean and rstd over the leading ones; ValueError for bad shapes or normalized_ndim."""

def layer_norm_backward(
    x: NDArray[_F],
    weight: NDArray[_F] | None,
    mean: NDArray[_F],
    rstd: NDArray[_F],
    gy: NDArray[_F],
    normalized_ndim: int,
) -> tuple[NDArray[_F], NDArray[_F] | None, NDArray[_F] | None]:
    """(gx, gweight, gbias) of layer_norm, the last two None without weight; ValueError for bad shapes or normalized_ndim."""

def group_norm_forward(
    x: NDArray[_F],
    weight: NDArray[_F] | None,
    bias: NDArray[_F] | None,
    num_groups: int,
    eps: float,
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F]]:
    """(y, mean, rstd) of group_norm on (N, C, *), mean and rstd (N, num_groups); ValueError for bad shapes or num_groups not dividing C."""

def group_norm_backward(
    x: NDArray[_F],
    weight: NDArray[_F] | None,
    mean: NDArray[_F],
    rstd: NDArray[_F],
    gy: NDArray[_F],
    num_groups: int,
) -> tuple[NDArray[_F], NDArray[_F] | None, NDArray[_F] | None]:
    """(gx, gweight, gbias) of group_norm, the last two None without weight; ValueError for bad shapes or num_groups."""

def batch_norm_forward(
    x: NDArray[_F],
    weight: NDArray[_F] | None,
    bias: NDArray[_F] | None,
    running_mean: NDArray[_F] | None,
    running_var: NDArray[_F] | None,
    training: bool,
    momentum: float,
    eps: float,
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F]]:
    """(y, mean, rstd (C,)) of batch_norm on (N, C, *), updating the running statistics in place when training; ValueError for bad shapes, one running array, or none in eval."""

def batch_norm_backward(
    x: NDArray[_F],
    weight: NDArray[_F] | None,
    mean: NDArray[_F],
    rstd: NDArray[_F],
    gy: NDArray[_F],
    training: bool,
) -> tuple[NDArray[_F], NDArray[_F] | None, NDArray[_F] | None]:
    """(gx, gweight, gbias) of batch_norm, the last two None without weight; ValueError for bad shapes."""

# -------------------------------------------------------------------------------- pool

def pool2d_max_forward(
    x: NDArray[_F], rows: _Table, cols: _Table, with_indices: bool
) -> tuple[NDArray[_F], NDArray[np.int64] | None]:
    """(y, int64 argmax indices or None) of max pooling (N, C, H, W) over the window tables; ValueError for a non-4-D x or a bad table (uneven lists, step < 1, count < 0)."""

def pool2d_max_backward(
    gy: NDArray[_F], indices_: NDArray[np.int64], input_shape: Sequence[int]
) -> NDArray[_F]:
    """gx of input_shape, gy scattered to its argmax indices; ValueError for bad shapes, TypeError if indices are not int64."""

def pool2d_avg_forward(x: NDArray[_F], rows: _Table, cols: _Table, divisor: int) -> NDArray[_F]:
    """Average pooling (N, C, H, W) over the window tables (divisor 0: the tables' factors); ValueError for a non-4-D x or a bad table (uneven lists, step < 1, count < 0)."""

def pool2d_avg_backward(
    gy: NDArray[_F], input_shape: Sequence[int], rows: _Table, cols: _Table, divisor: int
) -> NDArray[_F]:
    """gx of input_shape for average pooling's gy; ValueError if gy's shape does not match the tables or a table is bad."""

# ----------------------------------------------------------------------------- dropout

def philox_words(seed: int, offset: int, first_block: int, n_blocks: int) -> NDArray[np.uint32]:
    """uint32 (n_blocks, 4): Philox-4x32-10 blocks first_block, first_block + 1, ... of the stream (seed, offset); OverflowError for a negative argument."""

def dropout_apply(x: NDArray[_F], p: float, seed: int, offset: int) -> NDArray[_F]:
    """x times dropout's multiplier (0 or 1 / (1 - p)) from the stream (seed, offset); ValueError for p outside [0, 1]."""

# the output dtype is named by a string, so one overload per dtype
@overload
def dropblock_mask(
    shape: Sequence[int], dtype: Literal["float32"], gamma: float, block_size: int, seed: int, offset: int
) -> NDArray[np.float32]:
    """DropBlock's multiplier for an (N, C, H, W) shape from the stream (seed, offset); TypeError for another dtype, ValueError for a non-4-D shape, block_size outside [1, min(H, W)] or gamma < 0."""

@overload
def dropblock_mask(
    shape: Sequence[int], dtype: Literal["float64"], gamma: float, block_size: int, seed: int, offset: int
) -> NDArray[np.float64]:
    """DropBlock's multiplier for an (N, C, H, W) shape from the stream (seed, offset); TypeError for another dtype, ValueError for a non-4-D shape, block_size outside [1, min(H, W)] or gamma < 0."""

# --------------------------------------------------------------------------- attention

def attention_forward(
    q: NDArray[_F],
    k: NDArray[_F],
    v: NDArray[_F],
    mask: NDArray[_F] | None,
    scale: float,
    is_causal: bool,
) -> tuple[NDArray[_F], NDArray[_F]]:
    """(out (B, H, Lq, Dv), lse (B, H, Lq)) of flash attention with an optional additive mask; ValueError for bad shapes."""

def attention_backward(
    q: NDArray[_F],
    k: NDArray[_F],
    v: NDArray[_F],
    mask: NDArray[_F] | None,
    scale: float,
    is_causal: bool,
    out_: NDArray[_F],
    lse: NDArray[_F],
    gout: NDArray[_F],
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F]]:
    """(gq, gk, gv) of attention_forward for its output gradient gout; ValueError for bad shapes."""

# ------------------------------------------------------------------------------ native

def native_sequential_step(
    layers: Sequence[_LayerSpec],
    params: Sequence[NDArray[_F]],
    x: NDArray[_F],
    target: NDArray[_F] | NDArray[np.int64],
    loss: Literal["mse", "cross_entropy"],
    reduction: Literal["mean", "sum"],
    lr: float | None = None,
    buffers: Sequence[NDArray[_F]] = ...,
    streams: Sequence[tuple[int, int]] = ...,
) -> tuple[float, list[NDArray[_F]]]:
    """(loss, grads) of a sequential model on the Rust tape, with lr also param -= lr * grad in place; ValueError for a bad layer spec, loss, reduction or shape."""

# -------------------------------------------------------------------------------- conv

def conv2d_forward(
    x: NDArray[_F],
    weight: NDArray[_F],
    bias: NDArray[_F] | None,
    stride: _Pair,
    padding: _Pair,
    dilation: _Pair,
    groups: int,
    algo: _ConvAlgo = "im2col",
) -> NDArray[_F]:
    """conv2d (N, C, H, W) * (O, C/groups, KH, KW) -> (N, O, OH, OW) by algo; ValueError for an unknown algo or bad geometry, TypeError on dtype mismatch."""

def conv2d_backward(
    x: NDArray[_F],
    weight: NDArray[_F],
    gy: NDArray[_F],
    stride: _Pair,
    padding: _Pair,
    dilation: _Pair,
    groups: int,
    has_bias: bool,
    algo: _ConvAlgo = "im2col",
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F] | None]:
    """(gx, gweight, gbias or None) of conv2d_forward; ValueError for an unknown algo, bad geometry or gy's shape, TypeError on dtype mismatch."""

# --------------------------------------------------------------------------------- rnn

def lstm_forward(
    x: NDArray[_F],
    h0: NDArray[_F],
    c0: NDArray[_F],
    w_ih: NDArray[_F],
    w_hh: NDArray[_F],
    b_ih: NDArray[_F] | None,
    b_hh: NDArray[_F] | None,
    reverse: bool,
    keep_for_backward: bool = True,
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F], NDArray[_F] | None, NDArray[_F] | None]:
    """(y, h_n, c_n, gates, cells) of one LSTM layer over x (T, N, I), gates [i, f, g, o] as PyTorch, the last two None unless keep_for_backward; ValueError for bad shapes or one bias."""

def lstm_backward(
    x: NDArray[_F],
    h0: NDArray[_F],
    c0: NDArray[_F],
    w_ih: NDArray[_F],
    w_hh: NDArray[_F],
    y: NDArray[_F],
    gates: NDArray[_F],
    cells: NDArray[_F],
    gy: NDArray[_F],
    gh_n: NDArray[_F],
    gc_n: NDArray[_F],
    has_bias: bool,
    reverse: bool,
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F], NDArray[_F], NDArray[_F], NDArray[_F] | None]:
    """(gx, gh0, gc0, gw_ih, gw_hh, gb or None) of lstm_forward, gb (4H,) the gradient of each bias; ValueError for bad shapes."""

def gru_forward(
    x: NDArray[_F],
    h0: NDArray[_F],
    w_ih: NDArray[_F],
    w_hh: NDArray[_F],
    b_ih: NDArray[_F] | None,
    b_hh: NDArray[_F] | None,
    reverse: bool,
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F]]:
    """(y, h_n, gates (T, N, 4H)) of one GRU layer over x (T, N, I), gates [r, z, n] as PyTorch; ValueError for bad shapes or one bias."""

def gru_backward(
    x: NDArray[_F],
    h0: NDArray[_F],
    w_ih: NDArray[_F],
    w_hh: NDArray[_F],
    y: NDArray[_F],
    gates: NDArray[_F],
    gy: NDArray[_F],
    gh_n: NDArray[_F],
    has_bias: bool,
    reverse: bool,
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F], NDArray[_F], NDArray[_F] | None, NDArray[_F] | None]:
    """(gx, gh0, gw_ih, gw_hh, gb_ih, gb_hh; the biases' None without bias) of gru_forward; ValueError for bad shapes."""

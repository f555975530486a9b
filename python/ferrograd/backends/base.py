"""The kernel contract shared by every backend.

Every backend (numpy, rust, cuda) implements this class with the same method names,
arguments and semantics. The autograd engine (``ferrograd.autograd``) only ever calls
these methods, so an op can be followed from ``functional.py`` through the contract into
``backends/numpy/<family>.py`` (the readable reference), ``backends/rust/<family>.py`` and
``rust_core/src/ops/<family>.rs``, ``backends/cuda/<family>.py`` and ``cuda/<family>.cu``.

Conventions, for every method below:

* ``Array`` is the backend's native array: ``numpy.ndarray`` for numpy and rust, a PyCUDA
  ``GPUArray`` for cuda. Kernels never receive a ``ferrograd.Tensor``.
* Floating arrays are float32 or float64; the two operands of a kernel share one dtype
  (the Python layer converts scalars and checks dtypes before calling). Outputs have the
  inputs' dtype. Class indices (cross-entropy targets) are int64.
* Inputs may be non-contiguous (numpy views); a kernel must give the right answer for
  them (copying to a contiguous array first is fine). Outputs are new C-contiguous arrays
  unless a method says it works in place.
* Semantics follow PyTorch's documented behaviour for the op of the same name.
* Bad input raises ``ValueError`` (shapes, values) or ``TypeError`` (dtypes) whose
  message names the argument, what was expected and what was received. The Python layer
  validates first, but kernels are callable directly and validate too.
* Elementwise ``*_backward`` kernels receive the forward *input* ``x``, except
  ``sigmoid_backward`` and ``tanh_backward``, which receive the forward *output* ``y``
  (their derivatives are y (1 - y) and 1 - y^2: no exp or tanh to recompute), and the
  ``*_backward_mask`` kernels of relu and leaky_relu, which receive a packed mask of
  ``x > 0`` (one bit per element, written by ``*_forward_mask`` next to the output).
  When autograd records relu or leaky_relu it saves that mask, not a tensor: 1/32 of a
  float32 tensor's bytes to keep and to read back, so that gy, gx and the mask fit the
  L3 together (benches/README.md, "Measurements behind the code"). PyTorch saves the output for these two, and
  the input for gelu, swish and prelu, as ferrograd does.

Packed masks (``MASK``): a 1-D uint8 array of ``ceil(n / 8)`` bytes for ``n`` elements
in row-major order; bit ``i % 8`` (least significant first) of byte ``i // 8`` is
``x.flat[i] > 0`` (numpy's ``packbits(x > 0, bitorder="little")``), unused bits 0.
"""

from __future__ import annotations

import abc
from typing import Any, Optional, Sequence, Tuple

Array = Any  # the backend's native array type
Shape = Tuple[int, ...]


def contiguous_strides(shape: Sequence[int]) -> Tuple[int, ...]:
    """The element strides of a C-contiguous array of ``shape`` (the layout the
    indexing kernels' views are written against)."""
    strides, s = [], 1
    for n in reversed(shape):
        strides.append(s)
        s *= n
    return tuple(reversed(strides))

#: Binary elementwise ops (numpy broadcasting rules).
BINARY_OPS = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "clamp_min", "clamp_max")
#: Unary elementwise math ops.
UNARY_OPS = ("neg", "exp", "log", "abs", "sqrt", "rsqrt", "sin", "cos")
#: Elementwise comparisons (bool results), PyTorch's names.
COMPARE_OPS = ("eq", "ne", "lt", "le", "gt", "ge")
#: Logic on bool arrays ("not" takes one operand).
LOGICAL_OPS = ("and", "or", "xor", "not")
#: Elementwise tests of floats (bool results).
PREDICATES = ("isnan", "isinf", "isfinite")
#: GELU variants, as PyTorch's ``approximate`` argument.
GELU_APPROXIMATIONS = ("none", "tanh")
#: Loss reductions, as PyTorch's ``reduction`` argument.
REDUCTIONS = ("mean", "sum", "none")


class Backend(abc.ABC):
    """The kernel contract. Subclasses implement every abstract method."""

    #: the backend's name as users pass it: "numpy", "rust" or "cuda"
    name: str = ""

    def __reduce__(self):
        # a backend is one object per process (ops compare backends by identity): pickle
        # and deepcopy give back that object, by name, not a second instance
        from . import get_backend

        return (get_backend, (self.name,))

    def __deepcopy__(self, memo):
        return self

    # ------------------------------------------------------------------ arrays
    @abc.abstractmethod
    def from_numpy(self, a: "numpy.ndarray") -> Array:  # noqa: F821
        """Return ``a`` as this backend's array (a copy on cuda; may share memory on CPU)."""

    @abc.abstractmethod
    def to_numpy(self, x: Array) -> "numpy.ndarray":  # noqa: F821
        """Return ``x`` as a numpy array (a copy from the GPU; may share memory on CPU)."""

    @abc.abstractmethod
    def full(self, shape: Shape, value: float, dtype: Any) -> Array:
        """A new array of ``shape`` filled with ``value`` (dtype: numpy dtype)."""

    @abc.abstractmethod
    def copy(self, x: Array) -> Array:
        """A new C-contiguous array with the values of ``x``."""

    @abc.abstractmethod
    def reshape(self, x: Array, shape: Shape) -> Array:
        """``x`` with a new shape of the same size (a view where possible)."""

    @abc.abstractmethod
    def permute(self, x: Array, axes: Sequence[int]) -> Array:
        """``x`` with its axes reordered: result axis i is input axis ``axes[i]``."""

    @abc.abstractmethod
    def expand(self, x: Array, shape: Shape) -> Array:
        """``x`` broadcast to ``shape`` (numpy rules); values may be shared, read-only."""

    @abc.abstractmethod
    def sum_to_shape(self, g: Array, shape: Shape) -> Array:
        """Sum ``g`` over the axes that broadcasting added or stretched so it has ``shape``.

        The adjoint of ``expand``: used by every backward whose forward broadcast.
        """

    # ---------------------------------------------------------------- indexing
    # Basic indexing (ints, slices, None, Ellipsis), narrow, split/chunk/unbind and cat are
    # all strided reads or writes of a C-contiguous array: element i of the strided view
    # (shape, strides, offset) is x.flat[offset + sum_j i_j * strides[j]]. The Python layer
    # computes the view and checks that every position lies inside x; the strides are
    # non-negative (PyTorch's slices have positive steps) and a view never names one
    # position twice, so writes need no accumulation.
    @abc.abstractmethod
    def gather_strided(self, x: Array, shape: Shape, strides: Sequence[int], offset: int) -> Array:
        """A new C-contiguous array of ``shape`` holding the strided view of ``x``."""

    @abc.abstractmethod
    def copy_strided(self, dst: Array, src: Array, strides: Sequence[int], offset: int) -> None:
        """Write ``src`` into the strided view (src.shape, strides, offset) of the
        C-contiguous ``dst``, in place (gather_strided's adjoint into a zeroed dst; cat's
        forward into a fresh one)."""

    # ------------------------------------------------------- comparison, logic
    # bool arrays (numpy's bool_, one byte per element) are the results of comparisons and
    # predicates and the operands of logic, where and masked_fill; none is differentiable.
    @abc.abstractmethod
    def compare(self, op: str, a: Array, b: Array) -> Array:
        """``op`` in COMPARE_OPS of a and b broadcast together, a bool array (IEEE: NaN
        compares false but for ne)."""

    @abc.abstractmethod
    def logical(self, op: str, a: Array, b: Optional[Array] = None) -> Array:
        """``op`` in LOGICAL_OPS of bool arrays (broadcast; b is None for "not")."""

    @abc.abstractmethod
    def predicate(self, op: str, x: Array) -> Array:
        """``op`` in PREDICATES of a float array, a bool array."""

    @abc.abstractmethod
    def where(self, cond: Array, a: Array, b: Array) -> Array:
        """a where cond else b, the three broadcast together (cond bool, a and b one float
        dtype)."""

    @abc.abstractmethod
    def any_all(self, op: str, x: Array, axes: Sequence[int], keepdims: bool) -> Array:
        """"any" or "all" of a bool array over ``axes``, a bool array."""

    # ------------------------------------------------- elementwise arithmetic
    @abc.abstractmethod
    def binary_forward(self, op: str, a: Array, b: Array) -> Array:
        """``op`` in BINARY_OPS applied to ``a`` and ``b`` broadcast together.

        pow is ``a ** b`` (for a < 0 and non-integer b the result is NaN, as in PyTorch).
        maximum and clamp_min are the larger of a and b, minimum and clamp_max the smaller,
        NaN if either is NaN (torch.maximum, torch.clamp); the pairs differ in backward.
        """

    @abc.abstractmethod
    def binary_backward(self, op: str, a: Array, b: Array, gy: Array) -> Tuple[Array, Array]:
        """Gradients ``(ga, gb)`` of ``op`` given the output gradient ``gy``.

        ``gy`` has the broadcast shape; ``ga`` has ``a.shape`` and ``gb`` has ``b.shape``
        (summed over broadcast axes). For pow, ``gb = gy * a**b * log(a)``, taken as 0
        where ``a == 0`` (PyTorch's convention). PyTorch's rules for the rest:

        * maximum: gy goes to the larger operand, half to each where ``a == b``
          (``ga = gy`` scaled by 0 where a < b, 1/2 where a == b); minimum likewise to the
          smaller. A NaN operand compares false both ways: both get gy.
        * clamp_min(a, b) (a clamped from below by a number b): ``ga = gy`` where a > b
          strictly, else 0 (a tie and a NaN get 0); ``gb = gy`` where a < b. clamp_max:
          ``ga`` where a < b, ``gb`` where a > b. These are PyTorch's clamp with number
          bounds (2.15: no gradient at the bounds); clamp with tensor bounds is maximum /
          minimum, whose ties split the gradient, as PyTorch's does.
        """

    @abc.abstractmethod
    def unary_forward(self, op: str, x: Array) -> Array:
        """``op`` in UNARY_OPS elementwise (log of a negative is NaN, log(0) is -inf; sqrt
        of a negative NaN; rsqrt is 1 / sqrt(x), inf at 0)."""

    @abc.abstractmethod
    def unary_backward(self, op: str, x: Array, gy: Array) -> Array:
        """Gradient of ``op`` at ``x`` times ``gy`` (same shape as x). abs: gy * sign(x)
        (0 at 0, NaN at NaN); sqrt: gy / (2 sqrt(x)); rsqrt: -gy / 2 * rsqrt(x)^3 (both
        inf at 0, as PyTorch's); sin: gy cos(x); cos: -gy sin(x)."""

    # -------------------------------------------------------------- activations
    @abc.abstractmethod
    def relu_forward(self, x: Array) -> Array:
        """max(x, 0). NaN propagates."""

    @abc.abstractmethod
    def relu_backward(self, x: Array, gy: Array) -> Array:
        """gy where x > 0 else 0 (the subgradient at 0 is 0, as in PyTorch)."""

    @abc.abstractmethod
    def relu_forward_mask(self, x: Array) -> Tuple[Array, Array]:
        """``(relu_forward(x), mask of x > 0)``: the mask packed as the module docstring
        says (what the autograd saves for ``relu_backward_mask``)."""

    @abc.abstractmethod
    def relu_backward_mask(self, mask: Array, gy: Array) -> Array:
        """gy where the mask's bit is set else 0: ``relu_backward(x, gy)`` from the mask
        of x. ``mask`` must hold ``ceil(gy.size / 8)`` bytes."""

    @abc.abstractmethod
    def leaky_relu_forward(self, x: Array, negative_slope: float) -> Array:
        """x where x > 0 else negative_slope * x."""

    @abc.abstractmethod
    def leaky_relu_backward(self, x: Array, gy: Array, negative_slope: float) -> Array:
        """gy where x > 0 else negative_slope * gy."""

    @abc.abstractmethod
    def leaky_relu_forward_mask(self, x: Array, negative_slope: float) -> Tuple[Array, Array]:
        """``(leaky_relu_forward(x, negative_slope), mask of x > 0)``."""

    @abc.abstractmethod
    def leaky_relu_backward_mask(self, mask: Array, gy: Array, negative_slope: float) -> Array:
        """gy where the mask's bit is set else negative_slope * gy."""

    @abc.abstractmethod
    def prelu_forward(self, x: Array, weight: Array) -> Array:
        """x where x > 0 else weight * x.

        ``weight`` has shape (1,) (one alpha) or (C,) where C = x.shape[1] (one alpha per
        channel, x.ndim >= 2), as torch.nn.PReLU.
        """

    @abc.abstractmethod
    def prelu_backward(self, x: Array, weight: Array, gy: Array) -> Tuple[Array, Array]:
        """``(gx, gweight)``; gweight has weight's shape (summed over the other axes)."""

    @abc.abstractmethod
    def sigmoid_forward(self, x: Array) -> Array:
        """1 / (1 + exp(-x)), computed without overflow for large |x|."""

    @abc.abstractmethod
    def sigmoid_backward(self, y: Array, gy: Array) -> Array:
        """gy * y * (1 - y), from the forward's output y = sigmoid(x) (as PyTorch: the
        backward is then a cheap, bandwidth-bound pass over the buffer written last)."""

    @abc.abstractmethod
    def tanh_forward(self, x: Array) -> Array:
        """tanh(x); saturates to ±1 for large |x| without NaN."""

    @abc.abstractmethod
    def tanh_backward(self, y: Array, gy: Array) -> Array:
        """gy * (1 - y^2), from the forward's output y = tanh(x)."""

    @abc.abstractmethod
    def gelu_forward(self, x: Array, approximate: str) -> Array:
        """GELU. approximate="none": x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2));
        approximate="tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    @abc.abstractmethod
    def gelu_backward(self, x: Array, gy: Array, approximate: str) -> Array:
        """gy times the derivative of the chosen GELU at x."""

    @abc.abstractmethod
    def swish_forward(self, x: Array, beta: float) -> Array:
        """x * sigmoid(beta * x). SiLU is swish with beta = 1."""

    @abc.abstractmethod
    def swish_backward(self, x: Array, gy: Array, beta: float) -> Array:
        """gy * (s + beta * x * s * (1 - s)) with s = sigmoid(beta * x)."""

    # ------------------------------------------------------ reductions, softmax
    @abc.abstractmethod
    def sum_forward(self, x: Array, axes: Tuple[int, ...], keepdims: bool) -> Array:
        """Sum over ``axes`` (non-negative, sorted, unique; empty tuple = no reduction).

        Accumulates in at least the input precision with pairwise or blocked sums so
        that float32 sums of millions of elements stay within ~1e-5 relative.
        """

    @abc.abstractmethod
    def softmax_forward(self, x: Array) -> Array:
        """Softmax over the last axis, max-subtracted (stable for |x| up to float max)."""

    @abc.abstractmethod
    def softmax_backward(self, y: Array, gy: Array) -> Array:
        """Given y = softmax(x): gx = y * (gy - sum(gy * y, last axis, keepdims))."""

    @abc.abstractmethod
    def log_softmax_forward(self, x: Array) -> Array:
        """x - max - log(sum(exp(x - max))) over the last axis."""

    @abc.abstractmethod
    def log_softmax_backward(self, y: Array, gy: Array) -> Array:
        """Given y = log_softmax(x): gx = gy - exp(y) * sum(gy, last axis, keepdims)."""

    # ----------------------------------------------------------- linear algebra
    @abc.abstractmethod
    def matmul(self, a: Array, b: Array, transpose_a: bool = False,
               transpose_b: bool = False) -> Array:
        """op(a) @ op(b), op = transpose of the last two axes when asked.

        Both 2-D, or both 3-D with the same batch size (the Python layer reshapes and
        broadcasts batch dimensions before calling).
        """

    @abc.abstractmethod
    def linear_forward(self, x: Array, weight: Array, bias: Optional[Array]) -> Array:
        """x @ weight.T + bias. x: (N, in), weight: (out, in), bias: (out,) or None."""

    @abc.abstractmethod
    def linear_backward(self, x: Array, weight: Array, gy: Array, has_bias: bool
                        ) -> Tuple[Array, Array, Optional[Array]]:
        """``(gx, gweight, gbias)``: gy @ weight, gy.T @ x, gy summed over rows (or None)."""

    # ------------------------------------------------------------------ losses
    @abc.abstractmethod
    def mse_loss_forward(self, x: Array, target: Array, reduction: str) -> Array:
        """(x - target)^2, reduced by ``reduction`` in REDUCTIONS (0-d array unless 'none')."""

    @abc.abstractmethod
    def mse_loss_backward(self, x: Array, target: Array, gy: Array, reduction: str) -> Array:
        """Gradient w.r.t. x (the gradient w.r.t. target is its negation)."""

    @abc.abstractmethod
    def cross_entropy_forward(self, logits: Array, target: Array, reduction: str) -> Array:
        """Cross-entropy of (N, C) logits and (N,) int64 class indices in [0, C).

        -log_softmax(logits)[i, target[i]], reduced; computed with the log-sum-exp trick
        so logits of any magnitude give a finite loss.
        """

    @abc.abstractmethod
    def cross_entropy_backward(self, logits: Array, target: Array, gy: Array,
                               reduction: str) -> Array:
        """(softmax(logits) - onehot(target)) scaled by gy (and 1/N for 'mean')."""

    # -------------------------------------------------------- optimizer steps
    @abc.abstractmethod
    def sgd_step(self, param: Array, grad: Array, momentum_buffer: Optional[Array],
                 lr: float, momentum: float, dampening: float, weight_decay: float,
                 nesterov: bool, first_step: bool) -> None:
        """One torch.optim.SGD step, in place on ``param`` and ``momentum_buffer``.

        g = grad + weight_decay * param; if momentum: buf = g on the first step else
        momentum * buf + (1 - dampening) * g; g = g + momentum * buf if nesterov else buf;
        param -= lr * g. ``momentum_buffer`` is None when momentum == 0.
        """

    @abc.abstractmethod
    def adam_step(self, param: Array, grad: Array, exp_avg: Array, exp_avg_sq: Array,
                  step: int, lr: float, beta1: float, beta2: float, eps: float,
                  weight_decay: float, decoupled: bool) -> None:
        """One torch.optim.Adam (decoupled=False) or AdamW (decoupled=True) step, in place.

        Adam: g = grad + wd * param. AdamW: param *= 1 - lr * wd. Then
        m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
        param -= lr / (1 - b1^step) * m / (sqrt(v / (1 - b2^step)) + eps).
        """

    # ------------------------------------------------------------ normalization
    # Every normalization kernel computes statistics in one pass over memory that stays
    # stable for large means (see each backend for how), normalizes with the *biased*
    # variance, and returns the statistics it used as ``mean`` and ``rstd`` =
    # 1 / sqrt(var + eps) (the input's dtype) for the backward kernel. ``weight`` and
    # ``bias`` may each be None (no affine); the backward returns ``(gx, gweight, gbias)``
    # with gweight and gbias None when ``weight`` is None (the Python layer passes a ones
    # weight when only a bias is given).
    # NaN/inf (PyTorch's answers): a row (or channel) holding NaN or +-inf has NaN
    # statistics, so all of its y is NaN, and a NaN batch makes running_mean/running_var
    # NaN; finite values of any size normalize (1e20 does not overflow the variance to
    # give rstd = 0: the squares are taken in float64 where float32 would overflow).
    @abc.abstractmethod
    def layer_norm_forward(self, x: Array, weight: Optional[Array], bias: Optional[Array],
                           normalized_ndim: int, eps: float) -> Tuple[Array, Array, Array]:
        """torch.nn.functional.layer_norm over the last ``normalized_ndim`` axes of x.

        weight and bias have shape x.shape[-normalized_ndim:]. Returns (y, mean, rstd) with
        mean and rstd of shape x.shape[:-normalized_ndim].
        """

    @abc.abstractmethod
    def layer_norm_backward(self, x: Array, weight: Optional[Array], mean: Array, rstd: Array,
                            gy: Array, normalized_ndim: int
                            ) -> Tuple[Array, Optional[Array], Optional[Array]]:
        """With xhat = (x - mean) * rstd and g = gy * weight, over each normalized slice:
        gx = rstd * (g - mean(g) - xhat * mean(g * xhat)); gweight = sum of gy * xhat and
        gbias = sum of gy over the leading axes."""

    @abc.abstractmethod
    def group_norm_forward(self, x: Array, weight: Optional[Array], bias: Optional[Array],
                           num_groups: int, eps: float) -> Tuple[Array, Array, Array]:
        """torch.nn.functional.group_norm: x of shape (N, C, *), C divisible by num_groups;
        statistics over each (sample, group) of C / num_groups channels and all spatial
        positions; weight and bias of shape (C,) scale each channel. Returns (y, mean,
        rstd), mean and rstd of shape (N, num_groups). InstanceNorm is num_groups = C."""

    @abc.abstractmethod
    def group_norm_backward(self, x: Array, weight: Optional[Array], mean: Array, rstd: Array,
                            gy: Array, num_groups: int
                            ) -> Tuple[Array, Optional[Array], Optional[Array]]:
        """The layer_norm_backward formula over each (sample, group); gweight and gbias
        (C,) sum over the batch and spatial axes."""

    @abc.abstractmethod
    def batch_norm_forward(self, x: Array, weight: Optional[Array], bias: Optional[Array],
                           running_mean: Optional[Array], running_var: Optional[Array],
                           training: bool, momentum: float, eps: float
                           ) -> Tuple[Array, Array, Array]:
        """torch.nn.functional.batch_norm on x of shape (N, C, *): statistics per channel
        over the batch and spatial axes.

        training=True: normalizes with the batch mean and biased variance (at least two
        values per channel, else ValueError) and, when the running statistics are given,
        updates them in place: running_mean = (1 - momentum) running_mean + momentum mean,
        running_var = (1 - momentum) running_var + momentum * unbiased variance.
        training=False: normalizes with the running statistics (required). Returns
        (y, mean, rstd) of the statistics used, each (C,).
        """

    @abc.abstractmethod
    def batch_norm_backward(self, x: Array, weight: Optional[Array], mean: Array, rstd: Array,
                            gy: Array, training: bool
                            ) -> Tuple[Array, Optional[Array], Optional[Array]]:
        """training=True (batch statistics): the layer_norm_backward formula per channel
        over (N, *). training=False (running statistics are constants): gx = gy * weight *
        rstd. gweight = sum of gy * (x - mean) * rstd, gbias = sum of gy, per channel."""
    # ------------------------------------------------------------------ pooling
    # Inputs are (N, C, H, W) (the Python layer adds a batch axis to (C, H, W) inputs);
    # kernel_size, stride, padding, dilation are ints or (h, w) pairs, stride None means
    # kernel_size. Window and output-size rules are PyTorch's (ferrograd/backends/_pool.py
    # states them): padding <= kernel_size // 2, ceil_mode windows start inside the input
    # or the left padding, output at least 1x1, else ValueError.
    @abc.abstractmethod
    def max_pool2d_forward(self, x: Array, kernel_size, stride, padding, dilation,
                           ceil_mode: bool, return_indices: bool) -> Tuple[Array, Optional[Array]]:
        """``(y, indices)``: each window's max and, when ``return_indices``, its int64 flat
        index ``h * W + w`` in its (n, c) plane (PyTorch's convention; else None).

        Padding never wins; NaN propagates (an element is taken when it is the window's
        first valid one, larger than the max so far, or NaN); ties keep the first element
        in row-major order. A window without a valid element gives -inf and index -1.
        """

    @abc.abstractmethod
    def max_pool2d_backward(self, gy: Array, indices: Array, input_shape: Shape, kernel_size,
                            stride, padding, dilation, ceil_mode: bool) -> Array:
        """gx of ``input_shape``: each gy added at the input element its max came from
        (``indices``; overlapping windows accumulate, index -1 is skipped). The window
        arguments let a backend gather instead of scatter."""

    @abc.abstractmethod
    def avg_pool2d_forward(self, x: Array, kernel_size, stride, padding, ceil_mode: bool,
                           count_include_pad: bool, divisor_override: Optional[int]) -> Array:
        """Window sums (padding counts as 0) divided by ``divisor_override`` when given, else
        by the window clipped to the padded input (count_include_pad) or to the input."""

    @abc.abstractmethod
    def avg_pool2d_backward(self, gy: Array, input_shape: Shape, kernel_size, stride, padding,
                            ceil_mode: bool, count_include_pad: bool,
                            divisor_override: Optional[int]) -> Array:
        """gx: each gy / divisor added to every input element of its window."""

    @abc.abstractmethod
    def adaptive_avg_pool2d_forward(self, x: Array, output_size) -> Array:
        """Mean over PyTorch's adaptive windows: along an axis of length L pooled to O,
        output o covers [floor(o L / O), ceil((o + 1) L / O)). ``output_size``: an int or
        a pair, None keeping that axis' size; O may exceed L (windows then repeat)."""

    @abc.abstractmethod
    def adaptive_avg_pool2d_backward(self, gy: Array, input_shape: Shape) -> Array:
        """gx: each gy / window size added to its window's elements."""

    @abc.abstractmethod
    def adaptive_max_pool2d_forward(self, x: Array, output_size,
                                    return_indices: bool) -> Tuple[Array, Optional[Array]]:
        """``(y, indices)`` over the adaptive windows, with max_pool2d's max and index rules."""

    @abc.abstractmethod
    def adaptive_max_pool2d_backward(self, gy: Array, indices: Array, input_shape: Shape) -> Array:
        """gx: each gy added at its index (overlapping windows accumulate)."""

    # ------------------------------------------------------------------ dropout
    # One random stream on every backend: Philox4x32-10 (Random123; the generator curand
    # uses) with key = (lo32(seed), hi32(seed)). Element i (C-order flat index) of a call
    # with (seed, offset) takes word i % 4 of philox(ctr = (lo32(i // 4), hi32(i // 4),
    # lo32(offset), hi32(offset)), key): a pure function of (seed, offset, i), so masks are
    # identical bit for bit across backends, thread counts and launch configurations.
    # Each random call takes a fresh offset from fg's generator (fg.manual_seed resets it).
    # u = (word >> 8) * 2^-24 is uniform in [0, 1); an element is *dropped* when u < p,
    # tested on integers: (word >> 8) < ceil(p * 2^24).
    @abc.abstractmethod
    def philox_words(self, seed: int, offset: int, first_block: int, n_blocks: int) -> Array:
        """uint32 array (n_blocks, 4): the stream's blocks first_block, first_block + 1, ...
        (block indices wrap modulo 2^64). For tests against Random123's known answers."""

    @abc.abstractmethod
    def dropout_forward(self, x: Array, p: float, seed: int, offset: int) -> Array:
        """x * m, m = 1 / (1 - p) where kept and 0 where dropped (p = 1: all dropped, m = 0).
        A product, as in PyTorch: NaN or inf in a dropped place gives NaN."""

    @abc.abstractmethod
    def dropout_backward(self, gy: Array, p: float, seed: int, offset: int) -> Array:
        """gy * m with the forward's mask, regenerated from (seed, offset): no mask is
        stored between forward and backward (it is cheaper to recompute than to read)."""

    @abc.abstractmethod
    def dropblock_mask(self, shape: Shape, dtype: Any, gamma: float, block_size: int,
                       seed: int, offset: int) -> Array:
        """DropBlock's multiplier for an (N, C, H, W) input: keep * numel / count(keep)
        (all 0 when nothing is kept). A seed is element (n, c, i, j) with i <= H - b and
        j <= W - b dropped with probability ``gamma`` by the stream; it drops the b x b
        block whose top-left corner it is (torchvision's padded max-pool expansion);
        1 <= b = block_size <= min(H, W)."""

    # ---------------------------------------------------------------- attention
    # Scaled dot-product attention on (batch, heads, length, dim) arrays; the full
    # semantics (grouped key/value heads, mask shapes, causal alignment, rows whose keys
    # are all hidden) are in backends/_attention.py. The rust and cuda kernels are the
    # flash algorithm (tiled, online softmax, memory linear in the lengths); numpy is the
    # plain one, the oracle.
    @abc.abstractmethod
    def attention_forward(self, q: Array, k: Array, v: Array, mask: Optional[Array],
                          scale: float, is_causal: bool) -> Tuple[Array, Array]:
        """q (B, H, Lq, D), k (B, Hk, Lk, D), v (B, Hk, Lk, Dv), Hk dividing H; mask None or
        additive (1|B, 1|H, Lq, Lk). Returns (out (B, H, Lq, Dv), lse (B, H, Lq)): the
        log-sum-exp of each row of scale * q k^T + mask, -inf where every key is hidden
        (out is 0 there). A row with a NaN or +inf score (NaN in q/k/mask, inf - inf,
        0 * inf) is NaN in out and lse, as PyTorch's softmax gives."""

    @abc.abstractmethod
    def attention_backward(self, q: Array, k: Array, v: Array, mask: Optional[Array],
                           scale: float, is_causal: bool, out: Array, lse: Array,
                           gout: Array) -> Tuple[Array, Array, Array]:
        """(gq, gk, gv) for attention_forward's output gradient ``gout``; the scores are
        recomputed from q, k and ``lse``. The weights are normalized by their own sum where
        lse is too coarse (scores of 1e30), and a one-hot row has exactly zero score
        gradient; NaN rows give NaN gradients, hidden keys none from them."""
    # ------------------------------------------------------------------ convolution
    # torch.nn.functional.conv2d's semantics (cross-correlation): x (N, C, H, W), weight
    # (O, C / groups, KH, KW), bias (O,) or None; stride, padding, dilation are ints or
    # (h, w) pairs; output (N, O, OH, OW) with OH = (H + 2 ph - dh (KH - 1) - 1) // sh + 1.
    # ``algo`` is one of "auto", "naive", "im2col", "winograd", "fft" (ferrograd/backends/
    # _conv.py describes them and the "auto" rule); "winograd" needs a 3x3 kernel with
    # stride 1 and dilation 1 (ValueError otherwise). Backends may run an algorithm they do
    # not implement natively by another exact one (each backend says which).
    # NaN/inf: every algorithm multiplies the padding's zeros (0 * NaN or inf weight is
    # NaN at padded positions, as in PyTorch); forward and backward give the same bits on
    # every call whatever the thread count; sizes that overflow raise ValueError and
    # workspaces that cannot be allocated MemoryError.
    @abc.abstractmethod
    def conv2d_forward(self, x: Array, weight: Array, bias: Optional[Array], stride, padding,
                       dilation, groups: int, algo: str = "auto") -> Array:
        """The convolution's output (N, O, OH, OW)."""

    @abc.abstractmethod
    def conv2d_backward(self, x: Array, weight: Array, gy: Array, stride, padding, dilation,
                        groups: int, algo: str = "auto", has_bias: bool = True
                        ) -> Tuple[Array, Array, Optional[Array]]:
        """``(gx, gweight, gbias)`` for the upstream gradient gy (N, O, OH, OW); gbias is gy
        summed over (N, OH, OW), or None when ``has_bias`` is False."""
    # ---------------------------------------------------------------- recurrent
    # One layer in one direction over a time-major sequence (the Python layer composes
    # layers, directions, batch_first and inter-layer dropout). Shapes: x (T, N, I), states
    # (N, H), w_ih (G*H, I), w_hh (G*H, H), b_ih and b_hh (G*H,) or both None, with
    # PyTorch's gate order: LSTM G = 4 (i, f, g, o), GRU G = 3 (r, z, n). ``reverse`` runs
    # t = T-1 .. 0; y[t] is always the state produced at time t. The input projection of
    # the whole sequence is one GEMM, each step one GEMM with all gates fused plus one
    # fused pointwise pass. See backends/_rnn.py for the checks.
    @abc.abstractmethod
    def lstm_forward(self, x: Array, h0: Array, c0: Array, w_ih: Array, w_hh: Array,
                     b_ih: Optional[Array], b_hh: Optional[Array], reverse: bool
                     ) -> Tuple[Array, Array, Array, Array, Array]:
        """(y, h_n, c_n, gates, cells): y (T, N, H) the hidden states, gates (T, N, 4H) the
        activated gates [i, f, g, o], cells (T, N, H) the cell states, for backward.
        c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t)."""

    @abc.abstractmethod
    def lstm_backward(self, x: Array, h0: Array, c0: Array, w_ih: Array, w_hh: Array,
                      y: Array, gates: Array, cells: Array, gy: Array, gh_n: Array,
                      gc_n: Array, has_bias: bool, reverse: bool
                      ) -> Tuple[Array, Array, Array, Array, Array, Optional[Array]]:
        """(gx, gh0, gc0, gw_ih, gw_hh, gb) given the gradients of y, h_n and c_n; gb is the
        gradient of b_ih and of b_hh alike (None without bias)."""

    @abc.abstractmethod
    def gru_forward(self, x: Array, h0: Array, w_ih: Array, w_hh: Array,
                    b_ih: Optional[Array], b_hh: Optional[Array], reverse: bool
                    ) -> Tuple[Array, Array, Array]:
        """(y, h_n, gates): gates (T, N, 4H) = [r, z, n, W_hn h_{t-1} + b_hn] for backward.
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) (b_hn inside the reset product, as
        PyTorch), h_t = (1 - z) * n + z * h_{t-1}."""

    @abc.abstractmethod
    def gru_backward(self, x: Array, h0: Array, w_ih: Array, w_hh: Array, y: Array,
                     gates: Array, gy: Array, gh_n: Array, has_bias: bool, reverse: bool
                     ) -> Tuple[Array, Array, Array, Array, Optional[Array], Optional[Array]]:
        """(gx, gh0, gw_ih, gw_hh, gb_ih, gb_hh) given the gradients of y and h_n."""

    def lstm_forward_inference(self, x: Array, h0: Array, c0: Array, w_ih: Array, w_hh: Array,
                               b_ih: Optional[Array], b_hh: Optional[Array], reverse: bool
                               ) -> Tuple[Array, Array, Array]:
        """(y, h_n, c_n) of lstm_forward when no gradient will be taken: a backend may skip
        storing the gates and cells that only backward reads (this default does not)."""
        return tuple(self.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)[:3])

    @abc.abstractmethod
    def rnn_concat_cols(self, arrays: Sequence[Array]) -> Array:
        """The 2-D arrays (R, C_k) side by side: (R, sum C_k) (bidirectional outputs,
        stacked final states)."""

    @abc.abstractmethod
    def rnn_split_cols(self, a: Array, sizes: Sequence[int]) -> Tuple[Array, ...]:
        """The inverse of rnn_concat_cols: (R, C) into C-contiguous (R, sizes[k]) pieces."""

"""The functional API: every differentiable op by name, as torch.nn.functional."""

from .ops.attention import scaled_dot_product_attention
from .ops.activation import gelu, leaky_relu, prelu, relu, sigmoid, silu, swish, tanh
from .ops.conv import conv2d
from .ops.dropout import dropblock2d, dropout
from .ops.elementwise import (
    abs, add, clamp, clip, cos, div, exp, log, maximum, minimum, mul, neg, pow, rsqrt, sin,
    sqrt, sub)
from .ops.layout import expand, flatten, permute, reshape, transpose
from .ops.linear import linear, matmul
from .ops.loss import cross_entropy, mse_loss
from .ops.norm import batch_norm, group_norm, instance_norm, layer_norm
from .ops.pool import adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d
from .ops.reduce import mean, sum
from .ops.rnn import gru, lstm
from .ops.softmax import log_softmax, softmax

__all__ = [
    "add", "sub", "mul", "div", "pow", "neg", "exp", "log", "abs", "sqrt", "rsqrt", "sin",
    "cos", "maximum", "minimum", "clamp", "clip",
    "relu", "leaky_relu", "prelu", "sigmoid", "tanh", "gelu", "silu", "swish",
    "sum", "mean", "softmax", "log_softmax",
    "matmul", "linear", "reshape", "permute", "transpose", "flatten", "expand",
    "mse_loss", "cross_entropy",
    "batch_norm", "layer_norm", "group_norm", "instance_norm",
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
    "dropout", "dropblock2d",
    "scaled_dot_product_attention",
    "conv2d",
    "lstm", "gru",
]

"""The rust backend's class: each family's Rust kernels over the numpy backend, whose array
plumbing (and nothing else) it inherits."""

from __future__ import annotations

from ..numpy import NumpyBackend
from .activation import ActivationKernels
from .arrays import ArrayKernels
from .attention import AttentionKernels
from .conv import ConvKernels
from .dropout import DropoutKernels
from .elementwise import ElementwiseKernels
from .indexing import IndexingKernels
from .linear import LinearKernels
from .loss import LossKernels
from .norm import NormKernels
from .optim import OptimKernels
from .pool import PoolKernels
from .reduce import ReduceKernels
from .rnn import RnnKernels
from .softmax import SoftmaxKernels


class RustBackend(ArrayKernels, ElementwiseKernels, IndexingKernels, ActivationKernels,
                  ReduceKernels, SoftmaxKernels, LinearKernels, LossKernels, OptimKernels, NormKernels,
                  PoolKernels, DropoutKernels, AttentionKernels, ConvKernels, RnnKernels,
                  NumpyBackend):
    name = "rust"

"""The numpy backend's class: the contract (``..base.Backend``) with every family's kernels."""

from __future__ import annotations

from .. import base
from .activation import ActivationKernels
from .arrays import ArrayKernels
from .attention import AttentionKernels
from .conv import ConvKernels
from .dropout import DropoutKernels
from .elementwise import ElementwiseKernels
from .indexing import IndexingKernels
from .linear import LinearKernels
from .logic import LogicKernels
from .loss import LossKernels
from .norm import NormKernels
from .optim import OptimKernels
from .pool import PoolKernels
from .reduce import ReduceKernels
from .rnn import RnnKernels
from .softmax import SoftmaxKernels


class NumpyBackend(ArrayKernels, ElementwiseKernels, IndexingKernels, LogicKernels,
                   ActivationKernels, ReduceKernels, SoftmaxKernels, LinearKernels, LossKernels,
                   OptimKernels, NormKernels, PoolKernels, DropoutKernels, AttentionKernels,
                   ConvKernels, RnnKernels, base.Backend):
    name = "numpy"

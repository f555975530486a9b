"""The cuda backend's class: the runtime, the GEMM planner and every family's kernels."""

from __future__ import annotations

from .. import base
from .activation import ActivationKernels
from .arrays import ArrayKernels
from .attention import AttentionKernels
from .conv import ConvKernels
from .dropout import DropoutKernels
from .elementwise import ElementwiseKernels
from .indexing import IndexingKernels
from .gemm import GemmPlanner
from .linear import LinearKernels
from .logic import LogicKernels
from .loss import LossKernels
from .norm import NormKernels
from .optim import OptimKernels
from .pool import PoolKernels
from .reduce import ReduceKernels
from .rnn import RnnKernels
from .runtime import Runtime
from .softmax import SoftmaxKernels


class CudaBackend(Runtime, GemmPlanner, ArrayKernels, ElementwiseKernels, IndexingKernels,
                  LogicKernels, ActivationKernels, ReduceKernels, SoftmaxKernels, LinearKernels,
                  LossKernels, OptimKernels, NormKernels, PoolKernels, DropoutKernels,
                  AttentionKernels, ConvKernels, RnnKernels, base.Backend):
    name = "cuda"

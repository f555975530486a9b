"""Layers: Module, Sequential, Linear, activations and losses with PyTorch's names."""

from .activation import GELU, LeakyReLU, LogSoftmax, PReLU, ReLU, Sigmoid, SiLU, Softmax, Swish, Tanh
from .linear import Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import Module, Parameter, Sequential
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm2d, LayerNorm

__all__ = [
    "Module", "Parameter", "Sequential", "Linear",
    "ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "GELU", "SiLU", "Swish", "Softmax", "LogSoftmax",
    "MSELoss", "CrossEntropyLoss",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "InstanceNorm2d",
]

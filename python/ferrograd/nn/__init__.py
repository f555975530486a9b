"""Layers: Module, Sequential, Linear, activations and losses with PyTorch's names."""

from .attention import MultiheadAttention
from .activation import GELU, LeakyReLU, LogSoftmax, PReLU, ReLU, Sigmoid, SiLU, Softmax, Swish, Tanh
from .conv import Conv2d
from .dropout import DropBlock2d, DropConnect, Dropout
from .flatten import Flatten
from .linear import Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import Module, Parameter, Sequential
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm2d, LayerNorm
from .pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d
from .transformer import TransformerEncoder, TransformerEncoderLayer
from .rnn import GRU, LSTM, GRUCell, LSTMCell

__all__ = [
    "Module", "Parameter", "Sequential", "Linear",
    "ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "GELU", "SiLU", "Swish", "Softmax", "LogSoftmax",
    "MSELoss", "CrossEntropyLoss",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "InstanceNorm2d",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
    "Dropout", "DropConnect", "DropBlock2d",
    "MultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder",
    "Conv2d", "Flatten",
    "LSTM", "GRU", "LSTMCell", "GRUCell",
]

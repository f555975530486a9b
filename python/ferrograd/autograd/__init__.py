"""Reverse-mode autograd (the tape engine) and the gradient checker."""

from .checkpoint import checkpoint
from .engine import Function, backward, enable_grad, is_grad_enabled, no_grad, saved_bytes
from .gradcheck import GradcheckError, gradcheck
from .jvp import jvp

__all__ = ["Function", "backward", "no_grad", "enable_grad", "is_grad_enabled", "gradcheck", "GradcheckError",
           "checkpoint", "saved_bytes", "jvp"]

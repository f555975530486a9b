"""The digits example reaches 95% test accuracy on every backend."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp.py"


def load_example():
    spec = importlib.util.spec_from_file_location("digits_mlp", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_digits_mlp_reaches_95_percent(backend):
    acc = load_example().train(backend, epochs=20, verbose=False)
    assert acc >= 0.95, f"{backend}: test accuracy {acc:.4f}"

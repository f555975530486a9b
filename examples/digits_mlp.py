"""Train an MLP on scikit-learn's handwritten digits (8x8 images, 10 classes) on every
available ferrograd backend, and report test accuracy.

    python examples/digits_mlp.py                   # every available backend
    python examples/digits_mlp.py --backend rust    # one backend
    python examples/digits_mlp.py --epochs 10       # shorter

Each backend trains the same model from the same initial weights and batches; the test
accuracy is typically 97-98% (the example fails, exit code 1, below 95%).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import ferrograd as fg
import ferrograd.functional as F
import ferrograd.nn as nn


def load_digits_split(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)  # pixel values 0..16 -> 0..1
    y = data.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64), nn.SiLU(),
                         nn.Linear(64, 10))


def accuracy(model, x, y, backend) -> float:
    with fg.no_grad():
        logits = model(fg.tensor(x, backend=backend)).numpy()
    return float((logits.argmax(axis=1) == y).mean())


def train(backend: str, epochs: int, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
          verbose: bool = True) -> float:
    x_train, x_test, y_train, y_test = load_digits_split(seed)
    fg.manual_seed(seed)
    model = make_model().to(backend)
    opt = fg.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            xb = fg.tensor(x_train[idx], backend=backend)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), y_train[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if verbose and (epoch % 5 == 0 or epoch == 1 or epoch == epochs):
            print(f"[{backend}] epoch {epoch:3d}  loss {total / len(order):.4f}  "
                  f"test accuracy {accuracy(model, x_test, y_test, backend):.4f}", flush=True)
    acc = accuracy(model, x_test, y_test, backend)
    if verbose:
        print(f"[{backend}] final test accuracy {acc:.4f} ({time.perf_counter() - t0:.1f} s)")
    return acc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", action="append", choices=["numpy", "rust", "cuda"],
                   help="backend to train on (repeatable; default: every available one)")
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args(argv)
    backends = args.backend or fg.available_backends()
    results = {b: train(b, args.epochs) for b in backends}
    print("final test accuracy: " + ", ".join(f"{b} {a:.4f}" for b, a in results.items()))
    return 0 if all(a >= 0.95 for a in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

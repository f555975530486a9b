"""TransformerEncoderLayer / TransformerEncoder: PyTorch oracle (post-norm and norm_first,
relu and gelu, padding and causal masks, values and gradients), backends against numpy,
gradcheck, dropout in training, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import ferrograd as fg
import ferrograd.nn as nn
from ferrograd.testing import assert_close

from conftest import dtype_backend_ok


def _load(fm, tm):
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_matches_torch(cpu_backend, norm_first, activation):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    tl = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation,
                                          batch_first=True, norm_first=norm_first).double()
    fl = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation, batch_first=True,
                                    norm_first=norm_first, backend=cpu_backend, dtype=np.float64)
    assert sorted(fl.state_dict()) == sorted(tl.state_dict())
    _load(fl, tl)
    te = torch.nn.TransformerEncoder(tl, 2, norm=torch.nn.LayerNorm(16).double(), enable_nested_tensor=False)
    fe = nn.TransformerEncoder(fl, 2, norm=nn.LayerNorm(16, backend=cpu_backend, dtype=np.float64))
    assert sorted(fe.state_dict()) == sorted(te.state_dict())
    _load(fe, te)
    x = rng.standard_normal((2, 6, 16))
    kp = np.zeros((2, 6), bool)
    kp[1, 4:] = True
    for kw_t, kw_f in (({"src_key_padding_mask": torch.tensor(kp)}, {"src_key_padding_mask": kp}),
                       ({"mask": torch.nn.Transformer.generate_square_subsequent_mask(6).double(),
                         "is_causal": True}, {"is_causal": True})):
        tx = torch.tensor(x, requires_grad=True)
        fx = fg.tensor(x, backend=cpu_backend, requires_grad=True)
        to, fo = te(tx, **kw_t), fe(fx, **kw_f)
        gy = rng.standard_normal(to.shape)
        to.backward(torch.tensor(gy))
        fo.backward(fg.tensor(gy, backend=cpu_backend))
        assert_close(fo.numpy(), to.detach().numpy(), kind="reduction")
        assert_close(fx.grad.numpy(), tx.grad.numpy(), kind="reduction")
    assert_close(fe.layers[0].linear1.weight.grad.numpy(), te.layers[0].linear1.weight.grad.numpy(),
                 kind="reduction")
    assert_close(fe.layers[1].self_attn.in_proj_weight.grad.numpy(),
                 te.layers[1].self_attn.in_proj_weight.grad.numpy(), kind="reduction")


def test_layer_seq_first_matches_numpy(backend):
    dtype_backend_ok(backend, np.float32)
    rng = np.random.default_rng(1)
    ref = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, backend=backend)
    layer.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    x = rng.standard_normal((5, 3, 8)).astype(np.float32)   # (L, N, E)
    outs, grads = [], []
    for m, be in ((ref, "numpy"), (layer, backend)):
        t = fg.tensor(x, backend=be, requires_grad=True)
        y = m(t)
        y.backward(fg.tensor(np.ones(y.shape, np.float32), backend=be))
        outs.append(y.numpy())
        grads.append(t.grad.numpy())
    assert outs[0].shape == (5, 3, 8)
    assert_close(outs[1], outs[0], kind="reduction")
    assert_close(grads[1], grads[0], kind="reduction", scale=1.0)


def test_layer_gradcheck(cpu_backend):
    rng = np.random.default_rng(2)
    layer = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, activation="gelu", batch_first=True,
                                       backend=cpu_backend, dtype=np.float64)
    x = fg.tensor(rng.standard_normal((1, 3, 4)), backend=cpu_backend, requires_grad=True)
    assert fg.gradcheck(lambda t: layer(t), [x])


def test_dropout_in_training_only():
    rng = np.random.default_rng(3)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5, batch_first=True)
    x = fg.tensor(rng.standard_normal((2, 4, 8)).astype(np.float32))
    layer.eval()
    a, b = layer(x).numpy(), layer(x).numpy()
    np.testing.assert_array_equal(a, b)
    layer.train()
    fg.manual_seed(0)
    c = layer(x).numpy()
    fg.manual_seed(0)
    np.testing.assert_array_equal(layer(x).numpy(), c)
    assert not np.allclose(a, c)


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation: expected one of"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="num_heads: expected a divisor"):
        nn.TransformerEncoderLayer(8, 3)
    layer = nn.TransformerEncoderLayer(8, 2, 16)
    with pytest.raises(ValueError, match="num_layers: expected a positive integer"):
        nn.TransformerEncoder(layer, 0)
    with pytest.raises(TypeError, match="encoder_layer: expected a TransformerEncoderLayer"):
        nn.TransformerEncoder(nn.Linear(2, 2), 2)

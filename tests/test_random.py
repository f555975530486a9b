"""ferrograd.random: the one random stream (host generator + Philox offsets)."""

import numpy as np
import pytest

import ferrograd as fg
import ferrograd.functional as F


def test_manual_seed_resets_host_draws_and_the_philox_offset():
    fg.manual_seed(7)
    a = fg.randn(5).numpy()
    first = fg.random.philox_next()
    fg.manual_seed(7)
    assert np.array_equal(fg.randn(5).numpy(), a)
    assert fg.random.philox_next() == first == (7, 0)
    assert fg.initial_seed() == 7
    fg.manual_seed(2**64 + 3)
    assert fg.initial_seed() == 3  # the Philox key is the seed modulo 2**64


def test_rng_state_round_trip_restores_both_generators():
    fg.manual_seed(1)
    x = fg.tensor(np.ones((64,), np.float32))
    F.dropout(x, 0.5, training=True)
    state = fg.get_rng_state()
    after = (fg.randn(4).numpy(), F.dropout(x, 0.5, training=True).numpy())
    fg.randn(3), F.dropout(x, 0.5, training=True)  # move both generators on
    fg.set_rng_state(state)
    again = (fg.randn(4).numpy(), F.dropout(x, 0.5, training=True).numpy())
    assert np.array_equal(after[0], again[0]) and np.array_equal(after[1], again[1])


def test_philox_replay_gives_the_same_offsets_and_restores_the_stream():
    fg.manual_seed(3)
    fg.random.philox_next()
    start = fg.random.philox_offset()
    drawn = [fg.random.philox_next() for _ in range(3)]
    with fg.random.philox_replay(start):
        assert [fg.random.philox_next() for _ in range(3)] == drawn
    assert fg.random.philox_offset() == start + 3


def test_bad_seed_and_state_raise():
    with pytest.raises(ValueError, match="seed"):
        fg.manual_seed(-1)
    with pytest.raises(ValueError, match="seed"):
        fg.manual_seed(1.5)
    with pytest.raises(TypeError, match="state"):
        fg.set_rng_state({"seed": 0})

"""Invariants that hold for any input (hypothesis): the loss ignores what softmax ignores, and
display frames stay in range with an empty upper triangle in causal mode."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from badapple_jax.display import normalise_display
from badapple_jax.encoding import Sink, ZScore
from badapple_jax.layers import masked_softmax
from badapple_jax.loss import frame_loss

T = 10
finite = st.floats(-20.0, 20.0, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (T, T), elements=finite), arrays(np.float32, (T, 1), elements=finite),
       arrays(np.float32, (T, T), elements=st.floats(0.0, 1.0, width=32)))
def test_loss_is_invariant_to_a_per_row_constant(A, shift, frame):
    mask = ZScore().mask(T)
    d = ZScore().desired(frame)
    np.testing.assert_allclose(frame_loss(A + shift, d, mask), frame_loss(A, d, mask), rtol=1e-3, atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (2, T, T), elements=finite))
def test_display_frames_are_in_range_and_causal(A):
    v = normalise_display(np.asarray(masked_softmax(A, True)))
    assert np.all(np.isfinite(v)) and v.min() >= 0.0 and v.max() <= 1.0
    assert np.all(v[:, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0.0)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (2, T + 1, T + 1), elements=finite))
def test_sink_pictures_are_in_range_and_causal(A):
    v = Sink().picture(np.asarray(masked_softmax(A, True)))
    assert v.shape == (2, T, T) and np.all(np.isfinite(v)) and v.min() >= 0.0 and v.max() <= 1.0
    assert np.all(v[:, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0.0)

"""The public API checks its inputs at the boundary and refuses them in its own terms (BadInputError, or
OptionError naming the parameter), never with a raw JAX/NumPy error or a silent NaN; valid inputs, jit, vmap and
grad still work through every check."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import badapple_jax as bj
from badapple_jax.errors import OptionError

T = 8


@pytest.fixture(scope="module")
def layer(tiny_ckpt):
    return bj.load_layer(tiny_ckpt)[0]


@pytest.fixture(scope="module")
def w(layer):
    return bj.pick_head(layer, 0)


@pytest.fixture
def frame(rng):
    return rng.random((T, T)).astype(np.float32)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((T, T - 2), np.float32), r"square T x T frames, got shape \(8, 6\)"),
    (np.zeros((), np.float32), r"got shape \(\)"),
    (np.full((T, T), 3.0, np.float32), r"frames must lie in \[0, 1\], got values in \[3, 3\]"),
    (np.full((T, T), np.nan, np.float32), r"frames must lie in \[0, 1\]"),
    (np.zeros((T, T), np.int32), "floats in \\[0, 1\\] or uint8, got int32"),
], ids=["not square", "a number", "above 1", "NaN", "int32"])
@pytest.mark.parametrize("encoding", [bj.Sink(), bj.ZScore(), bj.Full(bj.Sink()), bj.Quarter()],
                         ids=["sink", "zscore", "full", "quarter"])
def test_desired_refuses_frames_it_cannot_show(encoding, bad, message):
    with pytest.raises(bj.BadInputError, match=message):
        encoding.desired(bad)


def test_uint8_frames_are_scaled_as_optimize_frames_scales_them(frame):
    as_bytes = (frame * 255).round().astype(np.uint8)
    np.testing.assert_allclose(bj.Sink().desired(as_bytes), bj.Sink().desired(as_bytes / np.float32(255)), atol=1e-6)
    assert np.isfinite(bj.Sink().desired(as_bytes)).all()


def test_desired_works_under_jit_vmap_and_grad(frame):
    enc = bj.Sink()
    expected = np.asarray(enc.desired(frame))
    np.testing.assert_allclose(jax.jit(enc.desired)(frame), expected, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(enc.desired)(frame[None])[0], expected, atol=1e-6)
    g = jax.grad(lambda f: jnp.sum(enc.desired(f) ** 2))(jnp.asarray(frame))
    assert g.shape == (T, T) and np.isfinite(g).all()
    # values are known only outside tracing: out of range under jit is the caller's, not a tracer error
    assert jax.jit(enc.desired)(frame * 3).shape == (T + 1, T + 1)


@pytest.mark.parametrize("make, message", [
    (lambda: bj.Sink(z=-1), r"z must exceed 1 \+ black"),
    (lambda: bj.Sink(z=1.2, black=0.3), r"z must exceed 1 \+ black"),
    (lambda: bj.Sink(z=float("inf")), "at most 1000"),
    (lambda: bj.Sink(black=-0.1), r"black must be in \[0, 1\], got -0.1"),
    (lambda: bj.Sink(z="2"), "z must be a number, got '2'"),
    (lambda: bj.ZScore(causal=1), "causal must be True or False, got 1"),
    (lambda: bj.make_encoding("nope"), "display must be one of sink, zscore, got nope"),
    (lambda: bj.make_encoding("sink", "upper"), "mode must be one of causal, full, quarter, got upper"),
    (lambda: bj.Settings(steps="100").check(), "steps must be an integer, got '100'"),
    (lambda: bj.Settings(seeds=1.5).check(), "seeds must be an integer, got 1.5"),
    (lambda: bj.Settings(seeds=True).check(), "seeds must be an integer, got True"),
    (lambda: bj.Settings(lr="0.1").check(), "lr must be a number, got '0.1'"),
    (lambda: bj.Settings(warm_start=1).check(), "warm_start must be True or False, got 1"),
    (lambda: bj.Settings(sink_z=1.0).check(), r"sink_z must exceed 1 \+ sink_black"),
    (lambda: bj.Settings(display="nope").check(), "display must be one of sink, zscore"),
    (lambda: bj.Quarter(z=1.5, black=0.3), r"z must exceed 1 \+ 2 black in mode quarter .* got 1.5"),
    (lambda: bj.Settings(mode="quarter", sink_black=0.5).check(), r"sink_z must exceed 1 \+ 2 sink_black in mode q"),
    (lambda: bj.Settings(mode="quarter", display="zscore").check(), "mode quarter needs display sink, got zscore"),
], ids=["Sink z<0", "Sink z<=1+b", "Sink z inf", "Sink black<0", "Sink z str", "ZScore causal int", "display",
        "mode", "steps str", "seeds float", "seeds bool", "lr str", "warm_start int", "sink_z", "Settings display",
        "Quarter z<=1+2b", "quarter sink_z", "quarter zscore"])
def test_constants_and_settings_are_options(make, message):
    with pytest.raises(OptionError, match=message) as e:
        make()
    assert "`" not in str(e.value)


def test_valid_constants_are_accepted():
    assert bj.Sink(z=3, black=0).Z(4) == 12  # an int is a number
    assert bj.Settings(lr=1, sink_z=3).check() is None
    assert bj.make_encoding("zscore", "full") == bj.Full(bj.ZScore())
    assert bj.make_encoding("sink", "quarter", z=3) == bj.Quarter(z=3) and bj.Settings(mode="quarter").check() is None
    with pytest.raises(bj.BadInputError, match="mode quarter is for causal models"):
        bj.make_encoding("sink", "quarter", causal=False)
    with pytest.raises(bj.BadInputError, match="Full shows a ZScore or a Sink"):
        bj.Full(bj.Full(bj.Sink()))


def test_frame_loss_refuses_maps_that_do_not_fit(w, frame):
    enc = bj.Sink()
    d, mask = enc.desired(frame), enc.mask(T)
    logits = bj.head_logits(np.zeros((T + 1, 64), np.float32), w)
    with pytest.raises(bj.BadInputError, match=r"logits must be \[..., L, L\] over the mask .* got shape \(8, 8\)"):
        bj.frame_loss(logits[1:, 1:], d, mask)
    with pytest.raises(bj.BadInputError, match=r"d must be \[..., L, L\]"):
        bj.frame_loss(logits, d[1:, 1:], mask)
    with pytest.raises(bj.BadInputError, match=r"mask must be \[L, L\]"):
        bj.frame_loss(logits, d, mask[0])
    with pytest.raises(bj.BadInputError, match=r"logits \(2, 9, 9\) and d \(3, 9, 9\) must agree on their leading"):
        bj.frame_loss(jnp.stack([logits] * 2), jnp.stack([d] * 3), mask)
    many = bj.frame_loss(jnp.stack([logits] * 2), d, mask)  # one target for several maps broadcasts
    assert many.shape == (2,) and float(many[0]) == pytest.approx(float(bj.frame_loss(logits, d, mask)))


def test_frame_loss_works_under_jit_and_grad(w, frame):
    enc = bj.Sink()
    d, mask = enc.desired(frame), enc.mask(T)
    loss = lambda x: bj.frame_loss(bj.head_logits(x, w), d, mask)  # noqa: E731
    x = jax.random.normal(jax.random.key(0), (T + 1, 64))
    assert float(jax.jit(loss)(x)) == pytest.approx(float(loss(x)), rel=1e-5)
    assert np.isfinite(jax.grad(loss)(x)).all()


@pytest.mark.parametrize("heads, message", [
    ([], r"heads must be one or more distinct heads, got \[\]"),
    ([0, 0], r"heads must be one or more distinct heads, got \[0, 0\]"),
    ([0, 4], "head 4 is out of range"),
    ([0, -1], "head -1 is out of range"),
    ([0.5], "head 0.5 is out of range"),
])
def test_pick_heads_refuses_heads_it_cannot_stack(layer, heads, message):
    with pytest.raises(bj.BadInputError, match=message):
        bj.pick_heads(layer, heads)


def test_pick_head_refuses_a_head_the_layer_lacks(layer):
    for head in (4, -1, True, "0"):
        with pytest.raises(bj.BadInputError, match="is out of range: the model has n_head 4"):
            bj.pick_head(layer, head)
    assert bj.pick_head(layer, np.int64(3)).w_q.shape == (64, 16)
    assert bj.pick_heads(layer, (2, 0)).w_q.shape == (2, 64, 16)


@pytest.mark.parametrize("seed, message", [
    (2**40, r"seed must be an integer in 0..2147483647, got 1099511627776"),
    (-1, "seed must be an integer in 0..2147483647, got -1"),
    (1.0, "seed must be an integer"),
])
def test_optimize_frames_refuses_a_seed_before_running(w, monkeypatch, seed, message):
    from badapple_jax import chunks

    program = bj.plan(w, T, 3, bj.Settings(steps=8, seeds=1))
    monkeypatch.setattr(chunks, "run_chunk", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(OptionError, match=message):
        next(bj.optimize_frames(program, np.zeros((3, T, T), np.float32), seed=seed))


@pytest.mark.parametrize("n_frames, chunk_size, error, message", [
    (3, 0, OptionError, "chunk_size must be an integer of at least 1, got 0"),
    (0, None, bj.BadInputError, "n_frames, the number of frames, must be an integer of at least 1, got 0"),
])
def test_plan_refuses_options_before_compiling(w, monkeypatch, n_frames, chunk_size, error, message):
    from badapple_jax import chunks

    monkeypatch.setattr(chunks, "compile_chunk", lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(error, match=message):
        bj.plan(w, T, n_frames, bj.Settings(steps=8, seeds=1), chunk_size=chunk_size)


def test_optimize_frames_runs_only_chunk_starts_of_its_frames(w, rng):
    frames, settings = rng.random((3, T, T)).astype(np.float32), bj.Settings(steps=8, seeds=1)
    program, _ = bj.compile_chunk(w, T, 2, settings)
    for starts in ([99], [1], [0, 0], ["0"]):
        with pytest.raises(bj.BadInputError, match=r"chunk_starts must be distinct chunk starts of these 3 frames "
                                                   r"\(multiples of the chunk size 2 below 3\)"):
            next(bj.optimize_frames(program, frames, chunk_starts=starts))
    assert [s for s, _ in bj.optimize_frames(program, frames, chunk_starts=[2], seed=2**31 - 1)] == [2]


def test_multi_start_refuses_starts_that_do_not_fit(w, rng):
    settings, enc = bj.Settings(steps=8, seeds=2), bj.Sink()
    problem = bj.Problem(enc.desired(rng.random((3, T, T)).astype(np.float32)), enc.mask(T), np.ones(3, bool))
    p0 = np.zeros((2, 3, T + 1, 64), np.float32)
    with pytest.raises(bj.BadInputError, match=r"p0 must be \[seeds, B, L, P\] = \(2, 3, 9, 64\), got shape \(1, 3,"):
        bj.multi_start(w, None, problem, p0[:1], settings)
    with pytest.raises(bj.BadInputError, match=r"p0 must be .* got shape \(2, 3, 9, 32\)"):
        bj.multi_start(w, None, problem, p0[..., :32], settings)
    with pytest.raises(bj.BadInputError, match=r"valid must be \[B\] = \(3,\), got shape \(2,\)"):
        bj.multi_start(w, None, problem.replace(valid=problem.valid[:2]), p0, settings)
    with pytest.raises(OptionError, match="steps must be at least 4"):
        bj.multi_start(w, None, problem, p0, bj.Settings(steps=2, seeds=2))
    result = jax.jit(bj.multi_start, static_argnames="settings")(w, None, problem, p0 + 0.1, settings=settings)
    assert result.x.shape == (3, T + 1, 64) and np.isfinite(result.loss).all()


def test_optimize_chunk_refuses_inputs_of_another_chunk(w, rng):
    frames, settings = rng.random((2, T, T)).astype(np.float32), bj.Settings(steps=8, seeds=1)
    with pytest.raises(bj.BadInputError, match=r"index must have shape \(2,\) for 2 frames, got \(3,\)"):
        bj.optimize_chunk(w, None, bj.Chunk(frames, np.arange(3), np.ones(2, bool)), 0, settings)
    with pytest.raises(bj.BadInputError, match=r"frames must be \[N, T, T\]"):
        bj.optimize_chunk(w, None, bj.Chunk(frames[0], np.arange(2), np.ones(2, bool)), 0, settings)


@pytest.mark.parametrize("k, message", [(-1, "got -1"), (0, "got 0"), (51, "got 51"), (2.0, "got 2.0")])
def test_nearest_tokens_refuses_a_k_the_vocabulary_cannot_give(rng, k, message):
    vocabulary, x = rng.normal(size=(50, 8)), rng.normal(size=(3, 8))
    with pytest.raises(bj.BadInputError, match=rf"k must be an integer in 1..50 \(the vocabulary's size\), {message}"):
        bj.nearest_tokens(x, vocabulary, k=k)
    with pytest.raises(bj.BadInputError, match="must share E"):
        bj.nearest_tokens(x[:, :5], vocabulary)
    assert bj.nearest_tokens(x, vocabulary, k=50)[0].shape == (3, 50)


def test_fidelity_refuses_pictures_and_regions_that_do_not_fit(rng):
    v, region = rng.random((2, T, T)), np.tri(T, dtype=bool)
    for metric in (bj.psnr, bj.ssim):
        with pytest.raises(bj.BadInputError, match=r"pictures and targets must be one shape .* and \(2, 8, 6\)"):
            metric(v, v[..., :6], region)
        with pytest.raises(bj.BadInputError, match=r"region must be bool \[T, T\] over pictures .*, got float64"):
            metric(v, v, np.tri(T))
        with pytest.raises(bj.BadInputError, match=r"region must be bool .* got bool \(6, 6\)"):
            metric(v, v, region[:6, :6])
    with pytest.raises(bj.BadInputError, match="region must be bool"):
        bj.flicker(v, region[:6, :6])
    assert bj.psnr(v, v, region).tolist() == [100.0, 100.0] and bj.flicker(v, region) > 0


def test_head_space_refuses_sequences_of_another_width(w):
    hs = bj.head_space(w)
    z = np.zeros((T, 32), np.float32)
    for bad, call in ((z[:, :8], bj.headspace_logits), (z[0], bj.lift), (np.zeros((65, 32)), bj.lift)):
        with pytest.raises(bj.BadInputError, match=r"z must be one sequence \[T, 32\] with T in 1..64"):
            call(bad, hs)
    with pytest.raises(ValueError, match=r"x must be one sequence of embeddings \[T, n_embd=64\]"):
        bj.to_head_space(z, hs)
    x = jax.jit(bj.lift)(z + 0.1, hs)
    np.testing.assert_allclose(jax.vmap(bj.to_head_space, in_axes=(0, None))(x[None], hs)[0], z + 0.1, atol=1e-4)


def test_gray_of_refuses_what_to_rgb_did_not_draw():
    with pytest.raises(bj.BadInputError, match="colours outside the magma colormap"):
        bj.gray_of(np.full((1, 2, 2, 3), [0, 255, 0], np.uint8))
    with pytest.raises(bj.BadInputError, match=r"frames must be uint8 colours \[..., T, T, 3\], got float32 \(2, 2\)"):
        bj.gray_of(np.zeros((2, 2), np.float32))
    assert bj.gray_of(bj.to_rgb(np.zeros((1, 2, 2), np.float32))).shape == (1, 2, 2)


def test_api_frames_errors_are_in_api_terms(tiny_ckpt):
    w = bj.pick_head(bj.load_layer(tiny_ckpt)[0], 0)
    with pytest.raises(bj.BadInputError, match=r"frames must be .* square T x T frames, got shape \(2, 8, 6\)"):
        next(bj.optimize_frames(bj.plan(w, 8, 2, bj.Settings(steps=8, seeds=1)), np.zeros((2, 8, 6), np.float32)))

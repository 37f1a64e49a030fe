"""The multi-start optimiser: schedule and Adam against PyTorch, and its behaviour on a tiny model."""
import inspect
import re

import jax
import numpy as np
import pytest

import badapple_jax as bj
from badapple_jax.chunks import compile_chunk, optimize_frames, plan
from badapple_jax.errors import OptionError
from badapple_jax.optimize import FAST_SOLVERS, PRESETS, Settings, phase_optimizer, warm_restart_cosine
from badapple_jax.model import pick_head
from badapple_jax.weights import load_layer


@pytest.mark.parametrize("n_steps", [375, 1125, 37])  # explore and refine phases of the default 1500 steps; a short one
def test_schedule_equals_torch_cosine_annealing_warm_restarts(n_steps):
    import torch

    lr, lr_min, T_0 = 0.1, 1e-4, max(n_steps // 4, 50)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=T_0, T_mult=1, eta_min=lr_min)
    expected = []
    for _ in range(n_steps):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = warm_restart_cosine(lr, lr_min, T_0, n_steps)
    got = [float(ours(t)) for t in range(n_steps)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("schedule, b2, n_steps", [("restarts", 0.999, 120), ("cosine", 0.9, 90), ("cosine", 0.5, 7)])
def test_phase_optimizer_equals_torch_adam_and_its_scheduler(schedule, b2, n_steps):
    """The whole phase against torch: Adam with betas (0.9, b2) and CosineAnnealingWarmRestarts or
    CosineAnnealingLR stepped after every update, on a fresh random least-squares problem."""
    import optax
    import torch

    rng = np.random.default_rng(n_steps)
    A, b, x0 = rng.normal(size=(12, 8)), rng.normal(size=12), rng.normal(size=8)
    settings = Settings(steps=4 * n_steps, lr=0.05, lr_min=1e-3, b2=b2, schedule=schedule)
    x = torch.nn.Parameter(torch.tensor(x0))
    opt = torch.optim.Adam([x], lr=settings.lr, betas=(0.9, b2), eps=1e-8)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_steps, eta_min=settings.lr_min)
             if schedule == "cosine" else torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                 opt, T_0=max(n_steps // 4, 50), eta_min=settings.lr_min))
    A_t, b_t = torch.tensor(A), torch.tensor(b)
    for _ in range(n_steps):
        opt.zero_grad()
        torch.sum((A_t @ x - b_t) ** 2).backward()
        opt.step()
        sched.step()
    ours = phase_optimizer(settings, n_steps)
    grad = jax.grad(lambda v: jax.numpy.sum((A @ v - b) ** 2))
    y, state = jax.numpy.asarray(x0), ours.init(jax.numpy.asarray(x0))
    for _ in range(n_steps):
        updates, state = ours.update(grad(y), state)
        y = optax.apply_updates(y, updates)
    np.testing.assert_allclose(np.asarray(y), x.detach().numpy(), rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("option, value, expected", [
    ("b2", 1.0, "b2 must be in [0, 1), got 1.0"), ("b2", float("nan"), "b2 must be in [0, 1), got nan"),
    ("schedule", "linear", "schedule must be one of restarts, cosine, got linear")])
def test_adam_options_are_checked(option, value, expected):
    with pytest.raises(OptionError, match=re.escape(expected)):
        Settings(**{option: value}).check()


def test_one_start_on_one_cycle_spends_every_step_refining():
    assert Settings(seeds=1, schedule="cosine", steps=200).explore == 0
    assert Settings(seeds=2, schedule="cosine", steps=200).explore == 50  # a choice to make: a quarter explores
    assert Settings(seeds=1, steps=200).explore == 50  # the reference's plan, whatever the seeds
    fast = Settings(**PRESETS["fast"])
    fast.check()
    assert (fast.explore, fast.refine, fast.frame_steps) == (0, fast.steps, fast.steps)


@pytest.fixture(scope="module")
def head(tiny_ckpt):
    return pick_head(load_layer(str(tiny_ckpt), 0)[0], 0)


@pytest.fixture(scope="module")
def frames():
    T = 16
    yy, xx = np.mgrid[:T, :T] / T
    return np.stack([0.05 + 0.95 * ((xx - 0.1 * k) ** 2 + (yy - 0.5) ** 2 < 0.1)
                     for k in range(5)]).clip(0, 1)


def run(head, frames, settings, chunk_size):
    program = plan(head, frames.shape[-1], len(frames), settings, chunk_size=chunk_size)
    results = list(optimize_frames(program, frames, seed=3))
    return jax.tree.map(lambda *a: np.concatenate(a), *[r for _, r in results])


def test_optimiser_lowers_the_loss_and_pads_the_last_chunk(head, frames):
    settings = Settings(steps=40, seeds=2)
    r = run(head, frames, settings, chunk_size=4)  # 5 frames: a full chunk and a padded one
    assert r.loss.shape == (5,) and r.x.shape == (5, 17, 64) and r.attention.shape == (5, 17, 17)
    assert r.explore_trace.shape == (5, 10, 2) and r.refine_trace.shape == (5, 30)
    first = r.explore_trace[:, 0, :].min(axis=1)
    assert np.all(r.loss < 0.01 * first), (r.loss, first)
    assert np.all(np.isfinite(r.x))
    np.testing.assert_allclose(r.attention.sum(-1), 1.0, rtol=1e-5)


def test_frame_results_do_not_depend_on_the_chunk(head, frames):
    settings = Settings(steps=20, seeds=2)
    a, b = run(head, frames, settings, chunk_size=2), run(head, frames, settings, chunk_size=5)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)
    np.testing.assert_array_equal(a.start, b.start)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-4, atol=1e-4)  # chunks of 2 and 5 round apart


def test_best_seed_per_frame_is_never_worse_than_one_per_chunk(head, frames):
    per_frame = run(head, frames, Settings(steps=20, seeds=3), chunk_size=5)
    per_chunk = run(head, frames, Settings(steps=20, seeds=3, seed_select="chunk"), chunk_size=5)
    np.testing.assert_allclose(per_frame.explore_loss, per_chunk.explore_loss, rtol=1e-6)  # same starts
    assert len(set(per_chunk.start)) == 1
    rows = np.arange(5)
    assert np.all(per_frame.explore_loss[rows, per_frame.start] <= per_chunk.explore_loss[rows, per_chunk.start])
    assert np.all(per_frame.explore_loss[rows, per_frame.start] == per_frame.explore_loss.min(axis=1))
    same = per_frame.start == per_chunk.start  # where both keep the same start, refinement is identical
    np.testing.assert_allclose(per_frame.loss[same], per_chunk.loss[same], rtol=1e-6)


PHASES = []  # the n_steps of every phase `still` was asked for


def still(settings, n_steps):  # a caller's optimiser: SGD at rate 0, so no parameter ever moves
    import optax

    PHASES.append(n_steps)
    return optax.sgd(0.0)


def test_a_callers_optimizer_runs_every_phase(head, frames):
    """`PhaseOptions.optimizer` replaces Adam in every phase: SGD at rate 0 leaves each start where it was, so every
    step's loss is the first's and the result is the kept start's."""
    settings = Settings(steps=8, seeds=2)
    program = plan(head, 16, 2, settings, chunk_size=2, options=bj.PhaseOptions(optimizer=still))
    assert PHASES == [settings.explore, settings.refine] and program.options.optimizer is still
    (_, r), = optimize_frames(program, frames[:2])
    np.testing.assert_allclose(r.explore_trace, np.broadcast_to(r.explore_trace[:, :1], r.explore_trace.shape))
    kept = r.explore_loss[np.arange(2), r.start]
    np.testing.assert_allclose(r.refine_trace, np.broadcast_to(kept[:, None], r.refine_trace.shape), rtol=1e-6)
    np.testing.assert_allclose(r.loss, kept, rtol=1e-5)
    assert bj.PhaseOptions().optimizer is phase_optimizer  # the default: Adam on the settings' schedule


def test_one_compiled_program_serves_every_chunk(head, frames):
    settings = Settings(steps=8, seeds=1)
    program, seconds = compile_chunk(head, 16, 2, settings)
    assert seconds > 0
    results = list(optimize_frames(program, frames))
    assert [start for start, _ in results] == [0, 2, 4]
    assert [len(r.loss) for _, r in results] == [2, 2, 1]


def test_precision_flags_reach_the_compiled_matmuls(head):
    import re

    seen = {}
    for precision in ("fp32", "tf32", "bf16"):
        program, _ = compile_chunk(head, 16, 2, Settings(steps=4, seeds=1, precision=precision))
        seen[precision] = set(re.findall(r"operand_precision=\{(\w+),", program.compiled.as_text()))
    # fp32 asks for full float32 passes, tf32 for one reduced pass; bf16 is XLA's default (one bf16 pass on GPUs)
    assert seen == {"fp32": {"highest"}, "tf32": {"high"}, "bf16": set()}


@pytest.mark.parametrize("frames, expected", [
    (np.zeros((16, 16), np.float32), r"got shape \(16, 16\) \(one frame: frames\[None\]\)"),
    (np.zeros((2, 16, 12), np.float32), "square T x T frames"),
    (np.full((1, 16, 16), 255.0, np.float32), r"frames must lie in \[0, 1\], got values in \[255, 255\]"),
    (np.zeros((1, 16, 16), np.int32), "floats in \\[0, 1\\] or uint8, got int32"),
    (np.zeros((0, 16, 16), np.float32), "frames is empty"),
], ids=["one frame without N", "not square", "0..255 floats", "int32", "none"])
def test_frames_are_checked_in_the_apis_terms_before_running(head, frames, expected):
    from badapple_jax.errors import BadInputError

    program, _ = compile_chunk(head, 16, 1, Settings(steps=8, seeds=1))
    with pytest.raises(BadInputError, match=expected):
        next(optimize_frames(program, frames))


def test_uint8_frames_are_scaled(head, frames):
    settings = Settings(steps=8, seeds=1)
    as_bytes = (frames[:2] * 255).round().astype(np.uint8)
    a = run(head, as_bytes, settings, chunk_size=2)
    b = run(head, as_bytes.astype(np.float32) / 255, settings, chunk_size=2)
    np.testing.assert_array_equal(a.loss, b.loss)


@pytest.mark.parametrize("shape, expected", [((2, 16, 64), r"one sequence of embeddings \[T, n_embd=64\]"),
                                             ((16, 32), r"\[T, n_embd=64\], got shape \(16, 32\)"),
                                             ((65, 64), "the model has positions for 1..64")])
def test_the_kernel_names_a_misshapen_x(head, shape, expected):
    from badapple_jax.kernel import attention, head_logits

    for f in (attention, head_logits):
        with pytest.raises(ValueError, match=expected):
            f(np.zeros(shape, np.float32), head)


def test_one_start_on_one_cycle_runs_one_phase(head, frames):
    r = run(head, frames, Settings(steps=12, seeds=1, lr=0.3, b2=0.9, schedule="cosine"), chunk_size=4)
    assert r.refine_trace.shape == (5, 12) and r.explore_trace.shape == (5, 0, 1)
    assert (r.start == 0).all()
    np.testing.assert_allclose(r.explore_loss[:, 0], r.refine_trace[:, 0], rtol=1e-5)  # the loss it starts from
    assert (r.loss < 0.5 * r.explore_loss[:, 0]).all()


def test_a_preset_resolves_for_the_heads_layer():
    """"fast" above layer 0, where head space cannot run, takes the embedding solver's settings, and another
    solver named its own; options given explicitly win, an explicit solver included (then refused where it cannot
    run)."""
    assert bj.preset_settings() == Settings()
    assert bj.preset_settings("fast", 0) == Settings(**PRESETS["fast"])
    embedding = {**PRESETS["fast"], "solver": "embedding", **FAST_SOLVERS["embedding"]}
    assert bj.preset_settings("fast", 3) == Settings(**embedding)
    assert bj.preset_settings("fast", 3, steps=40) == Settings(**{**embedding, "steps": 40})
    headspace = Settings(**{**PRESETS["fast"], "solver": "headspace", **FAST_SOLVERS["headspace"]})
    assert bj.preset_settings("fast", 0, solver="headspace") == headspace
    assert bj.preset_settings("fast", 3, solver="headspace") == headspace  # refused where the layer is loaded
    assert bj.preset_settings("reference", 3) == Settings(**PRESETS["reference"])
    with pytest.raises(OptionError, match="preset must be one of reference, fast, got 'quick'"):
        bj.preset_settings("quick")


def test_a_preset_for_a_higher_layer_runs_there(tiny_ckpt, rng):
    """The API resolves "fast" at layer 1 as the command line does; the preset as written cannot run there."""
    w = pick_head(load_layer(tiny_ckpt, 1)[0], 0)
    with pytest.raises(OptionError, match="solver headspace and qk work at layer 0 only"):
        compile_chunk(w, 4, 1, Settings(**{**PRESETS["fast"], "steps": 8}))
    (_, result), = optimize_frames(plan(w, 4, 1, bj.preset_settings("fast", 1, steps=8)), rng.uniform(size=(1, 4, 4)))
    assert np.isfinite(result.loss).all()


def test_chunk_result_and_loss_document_themselves():
    assert "the loss of the saved embedding" in bj.ChunkResult.__doc__
    assert "LOGITS" in bj.frame_loss.__doc__ and "logits" in inspect.signature(bj.frame_loss).parameters

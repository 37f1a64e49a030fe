"""badapple-jax: one attention head of a frozen transformer (GPT-2, BERT) displays a video.

    import badapple_jax as bj
    w = bj.pick_head(bj.load_layer("random:gpt2-xl")[0], head=0)   # or "gpt2-xl", "minilm", a local dir
    a = bj.attention(x, w)                                          # x [L, n_embd] -> [L, L] attention map
    v = bj.Sink(causal=w.config.causal).picture(a)                 # -> [L-1, L-1] the frame token 0's sink shows
"""
import contextlib

from badapple_jax.interrupt import COMMAND, deferred_interrupt, guard_command

# Importing the library changes nothing in the caller's process: no environment variable, no warnings filter,
# no signal handler. As the `badapple-jax` command (interrupt.COMMAND) the process is ours: SIGINT and SIGTERM
# are the command's from here on, and while JAX loads (seconds) they wait until the imports are done and then end
# it with one line and status 130 (a KeyboardInterrupt in the middle could crash or print a traceback).
if COMMAND:
    guard_command()
with deferred_interrupt() if COMMAND else contextlib.nullcontext():
    from badapple_jax.display import colourise, gray_of, normalise_display, stitch_full, to_rgb
    from badapple_jax.encoding import Full, Quarter, Sink, ZScore, make_encoding
    from badapple_jax.errors import BadInputError, Interrupted
    from badapple_jax.kernel import attention, head_logits, layer_attention
    from badapple_jax.layers import layer_norm, masked_softmax
    from badapple_jax.loss import frame_loss, row_centred
    from badapple_jax.chunks import Program, auto_program, compile_chunk, frame_mesh, optimize_frames, plan
    from badapple_jax.headspace import HeadSpace, head_space, headspace_logits, lift, to_head_space
    from badapple_jax.optimize import (PRESETS, Chunk, ChunkResult, PhaseOptions, Problem, Settings, multi_start,
                                       optimize_chunk, phase_optimizer, preset_settings, warm_restart_cosine)
    from badapple_jax.render import Job, render
    from badapple_jax.solver import Embedding, make_solver
    from badapple_jax.fidelity import flicker, psnr, ssim
    from badapple_jax.targets import centred_log, quarter_target, row_normalise, sink_target
    from badapple_jax.video import Clip, demo_clip, read_clip, write_video
    from badapple_jax.model import HeadWeights, LayerWeights, ModelConfig, ModelInfo, pick_head, pick_heads
    from badapple_jax.readout import nearest_tokens
    from badapple_jax.weights import (export_checkpoint, layer_from_state_dict, layer_from_transformers, load_layer,
                                      minilm_dir, random_layer, token_embedding)

__all__ = [
    "BadInputError", "Chunk", "ChunkResult", "Clip", "Embedding", "Full", "HeadSpace", "HeadWeights", "Interrupted",
    "Job", "LayerWeights", "ModelConfig", "ModelInfo", "PRESETS", "PhaseOptions", "Problem", "Program", "Quarter",
    "Settings", "Sink", "ZScore", "attention", "auto_program", "centred_log", "colourise",
    "compile_chunk", "demo_clip", "export_checkpoint", "flicker", "frame_loss", "frame_mesh", "gray_of",
    "head_logits", "head_space", "headspace_logits", "layer_attention", "layer_from_state_dict",
    "layer_from_transformers", "layer_norm", "lift", "load_layer", "make_encoding", "make_solver", "minilm_dir",
    "masked_softmax", "multi_start", "nearest_tokens", "normalise_display", "optimize_chunk", "optimize_frames",
    "phase_optimizer", "pick_head", "pick_heads", "plan", "preset_settings", "psnr", "quarter_target",
    "random_layer", "read_clip", "render", "row_centred", "row_normalise", "sink_target", "ssim", "stitch_full",
    "to_head_space", "to_rgb", "token_embedding", "warm_restart_cosine", "write_video"
]

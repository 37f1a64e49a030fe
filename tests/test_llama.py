"""Llama-family decoders (SPEC 15): the kernel against transformers' LlamaModel, Qwen2Model and MistralModel, the
loader (prefixes, the hub), head space with RMSNorm, RoPE and grouped-query attention, renders, export, refusals."""
import json

import jax
import numpy as np
import pytest
from test_bert import hf_attentions, rewrite
from test_weights import load_from_hub

import badapple_jax as bj
from badapple_jax.cli import main
from badapple_jax.errors import BadInputError
from badapple_jax.families import RANDOM
from badapple_jax.headspace import head_space, headspace_logits, lift
from badapple_jax.kernel import attention, head_logits
from badapple_jax.model import kv_head, pick_head, pick_heads
from badapple_jax.rotary import LLAMA3, inv_freq
from badapple_jax.weights import load_layer
from scripts import check_with_transformers

LLAMAS = ["llama", "qwen2", "mistral"]
SMALL = ["--size", "16", "--max-frames", "2", "--seeds", "1", "--steps", "60", "-q"]


@pytest.mark.parametrize("family", LLAMAS)
@pytest.mark.parametrize("layer", [0, 1])
def test_every_head_matches_transformers(tiny_decoders, rng, family, layer):
    ckpt = tiny_decoders[family]
    x = rng.normal(0.0, 1.0, (24, 64)).astype(np.float32)
    expected = hf_attentions(ckpt, x)[layer]
    w, info = load_layer(ckpt, layer)
    assert info.config.family == family and info.config.norm == "rms" and info.config.rotary_dim == 16
    for head in range(4):
        got = np.asarray(attention(x, pick_head(w, head)))
        np.testing.assert_allclose(got, expected[head], atol=1e-5, err_msg=f"{family} layer {layer} head {head}")
    np.testing.assert_allclose(bj.layer_attention(x, w), expected, atol=1e-5)


def test_grouped_query_heads_share_their_key_head(tiny_decoders):
    w, info = load_layer(tiny_decoders["llama"])
    assert (info.config.n_kv, info.config.rope_llama3) == (2, (4.0, 1.0, 4.0, 16.0))
    assert [kv_head(info.config, h) for h in range(4)] == [0, 0, 1, 1]
    np.testing.assert_array_equal(pick_head(w, 0).w_k, pick_head(w, 1).w_k)
    assert not np.array_equal(pick_head(w, 1).w_k, pick_head(w, 2).w_k)


@pytest.mark.parametrize("heads", [[2], [0, 1]])  # one head; a group sharing a key head (M of rank 3 d_head)
def test_head_space_lift_is_exact_with_rmsnorm_and_rope(tiny_decoders, rng, heads):
    layer, _ = load_layer(tiny_decoders["llama"])
    w = pick_head(layer, heads[0]) if len(heads) == 1 else pick_heads(layer, heads)
    hs = head_space(w)
    p = rng.normal(0.0, 3.0, (17, hs.U.shape[1])).astype(np.float32)
    x = lift(p, hs)
    got = head_logits(x, w) if len(heads) == 1 else jax.vmap(head_logits, in_axes=(None, 0))(x, w)
    np.testing.assert_allclose(got, headspace_logits(p, hs), rtol=1e-4, atol=1e-4)
    assert not np.allclose(headspace_logits(p, hs)[..., 5, 2], headspace_logits(p[::-1], hs)[..., 11, 14])


@pytest.mark.parametrize("family", LLAMAS)
def test_render_pngs_are_what_transformers_computes_from_the_saved_embeddings(tiny_decoders, tmp_path, family):
    out = tmp_path / "r.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_decoders[family]), "--head", "3",
                 "--save-embeddings", *SMALL]) == 0
    metrics = json.loads((tmp_path / "r.work" / "metrics.json").read_text())
    assert metrics["model"]["config"]["family"] == family and metrics["median_psnr"] > 10
    assert check_with_transformers.main([str(tmp_path / "r.work")]) == 0


def test_loader_prefix_and_hub_read_only_the_blocks_needed(tiny_decoders, tmp_path, monkeypatch):
    src = tiny_decoders["llama"]
    prefixed = rewrite(src, tmp_path / "prefixed", lambda t: {f"model.{k}": v for k, v in t.items()})
    w, info, served = load_from_hub(monkeypatch, tmp_path, "tiny/llama", prefixed, 0)
    assert info.source.startswith("hub tiny/llama@")
    assert served < (prefixed / "model.safetensors").stat().st_size / 4  # layer 0's norm, q and k: no block
    for layer in (0, 1):
        a, b = load_layer(src, layer)[0], load_layer(prefixed, layer)[0]
        for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(w.w_k, load_layer(src, 0)[0].w_k)


def test_weights_from_a_model_object(tiny_decoders, rng):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_decoders["qwen2"])  # keys under `model.`, and an lm_head
    w, info = bj.layer_from_transformers(model, 1)
    assert info.config == load_layer(tiny_decoders["qwen2"], 1)[1].config
    x = rng.normal(0.0, 1.0, (12, 64)).astype(np.float32)
    np.testing.assert_allclose(bj.layer_attention(x, w), hf_attentions(tiny_decoders["qwen2"], x)[1], atol=1e-5)


@pytest.mark.parametrize("model", ["random:smollm2-135m", "random:qwen2.5-0.5b"])
def test_exported_random_model_is_what_transformers_computes(model, tmp_path, rng):
    from transformers import AutoModel

    out = bj.export_checkpoint(model, tmp_path / "ckpt", 0)
    _, loading = AutoModel.from_pretrained(out, output_loading_info=True)
    assert not any(loading.values()), loading
    w, info = bj.load_layer(model)
    x = rng.normal(0.0, 1.0, (10, info.config.n_embd)).astype(np.float32)
    np.testing.assert_allclose(bj.layer_attention(x, w), hf_attentions(out, x)[0], atol=2e-6)


@pytest.mark.parametrize("name", ["llama-3.2-1b", "smollm2-135m"])
def test_rotary_frequencies_are_transformers(name):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    c = RANDOM[name]
    scaling = {"rope_type": "llama3", **dict(zip(LLAMA3, c.rope_llama3))} if c.rope_llama3 else None
    hf = LlamaConfig(hidden_size=c.n_embd, num_attention_heads=c.n_head, head_dim=c.d_head, rope_theta=c.rope_theta,
                     rope_scaling=scaling, max_position_embeddings=c.n_positions)
    np.testing.assert_allclose(inv_freq(c), LlamaRotaryEmbedding(hf).inv_freq.numpy(), rtol=1e-6)


def test_random_llama_3_2_1b_is_its_shape():
    w, info = load_layer("random:llama-3.2-1b")
    c = info.config
    assert (c.n_head, c.n_kv, c.d_head, c.rotary_dim, c.rope_theta) == (32, 8, 64, 64, 500000.0)
    assert (w.pos.shape, w.w_q.shape, w.w_k.shape) == ((0, 2048), (2048, 2048), (2048, 512))
    assert pick_head(w, 31).w_k.shape == (2048, 64)


def changed(**changes):  # config.json with `changes`, None removing a field
    return lambda c: {k: v for k, v in {**c, **changes}.items() if v is not None}


REFUSED = {
    "yarn": ({"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "rope_theta": 10.0}},
             'rope_parameters type "yarn" is not supported; supported: default, llama3.'),
    "legacy linear": ({"rope_parameters": None, "rope_scaling": {"type": "linear", "factor": 2.0}},
                      'rope_scaling type "linear" is not supported'),
    "activation": ({"hidden_act": "gelu_fast"}, 'hidden_act is "gelu_fast"; supported:'),
    "partial": ({"rope_parameters": {"rope_type": "default", "rope_theta": 10.0, "partial_rotary_factor": 0.5}},
                "partial_rotary_factor is 0.5; this family rotates whole heads"),
    "bias": ({"attention_bias": "yes"}, 'attention_bias is "yes", expected true or false.'),
    "groups": ({"num_key_value_heads": 3}, "num_attention_heads 4 is not a multiple of num_key_value_heads 3."),
    "theta": ({"rope_parameters": {"rope_type": "default", "rope_theta": -1}}, "rope_theta is -1, expected a number"),
    "llama3 field": ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 10.0}},
                     "rope_parameters.low_freq_factor is null"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_unsupported_config_values_are_refused_in_one_line(tiny_decoders, tmp_path, case):
    changes, message = REFUSED[case]
    ckpt = rewrite(tiny_decoders["llama"], tmp_path / "c", config=changed(**changes))
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        load_layer(ckpt)
    assert "\n" not in str(e.value)


def test_mistral_display_beyond_its_sliding_window_is_refused(tiny_decoders, tmp_path, capsys):
    assert load_layer(tiny_decoders["mistral"])[1].config.n_positions == 32  # sliding_window 32 of 64 positions
    assert main(["render", "demo", "-o", str(tmp_path / "m.mp4"), "--model", str(tiny_decoders["mistral"]),
                 "--size", "40", "--max-frames", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs 41 positions with the sink display; the model has 32: use --size 31" in err


def test_colour_full_mode_and_survey_on_a_grouped_query_model(tiny_decoders, tmp_path):
    import imageio.v3 as iio

    model = str(tiny_decoders["llama"])
    assert main(["render", "demo", "-o", str(tmp_path / "c.mp4"), "--model", model, "--color", "--heads", "0,1,2",
                 "--mode", "full", "--solver", "embedding", *SMALL]) == 0  # heads 0 and 1 share key head 0; their
    # q/k columns span all of n_embd 64, so no head space
    png = iio.imread(min((tmp_path / "c.work" / "frames").glob("*.png")))
    assert png.shape == (16, 16, 3) and png[np.triu_indices(16, 1)].max() > 0  # colour, both triangles
    prefix = tmp_path / "survey"
    assert main(["survey", "demo", "-o", str(prefix), "--model", model, "--layers", "all", "--frames", "2",
                 "--size", "12", "--steps", "40", "--seeds", "1"]) == 0
    rows = json.loads(prefix.with_suffix(".json").read_text())["rows"]
    assert sorted((r["layer"], r["head"]) for r in rows) == [(L, h) for L in (0, 1) for h in range(4)]


def test_unreachable_hub_suggests_the_random_shape_of_the_repo(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("BADAPPLE_JAX_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BadInputError, match=r"model random:llama-3.2-1b \(random weights\)"):
        load_layer("meta-llama/Llama-3.2-1B")

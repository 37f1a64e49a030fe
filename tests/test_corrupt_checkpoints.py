"""Corrupt checkpoints (issue 13, class 6): bad values in config.json, tensors that are NaN, infinite or absurdly
large, and *.safetensors entries that are not files are refused in one line naming the problem, never rendered."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from badapple_jax.cli import main
from badapple_jax.errors import BadInputError
from badapple_jax.weights import MAX_WEIGHT, load_layer

from test_bad_inputs import assert_refused
from test_weights import SHA, hub, rewrite  # noqa: F401  (hub: the loopback hub fixture)

FAST = ["--steps", "8", "--seeds", "1", "--size", "16", "--max-frames", "2", "-q"]


# --- how each checkpoint is broken: (tiny checkpoint, destination) -> the broken checkpoint ------------------------


def set_value(key, value, dtype=None):
    """One element of tensor `key` set to `value` (after an optional cast of the whole checkpoint)."""
    def edit(t):
        t[key].flat[0] = value
        return t

    def make(src, dst):
        (shard,) = rewrite(src, dst, edit, dtype=dtype).glob("*.safetensors")
        shard.rename(dst / "model.safetensors")  # the one name the hub is asked for
        return dst

    return make


def set_config(**fields):
    """config.json with `fields` replaced; the tensors unchanged."""
    def make(src, dst):
        shutil.copytree(src, dst)
        config = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps({**config, **fields}))
        return dst

    return make


def replace_file(name, how):
    """File `name` of the checkpoint replaced by what `how(path)` puts there."""
    def make(src, dst):
        shutil.copytree(src, dst)
        (dst / name).unlink()
        how(dst / name)
        return dst

    return make


def dangling(path):
    path.symlink_to(path.parent / "gone.safetensors")


# case -> (make, layer loaded, message). {ckpt}: the directory as given, {real}: resolved (the tensor messages).
CASES = {
    "NaN weight": (set_value("h.0.attn.c_attn.weight", np.nan), 0,
                   "checkpoint {real}: h.0.attn.c_attn.weight holds NaN or infinite values."),
    "inf weight": (set_value("wpe.weight", np.inf), 0, "checkpoint {real}: wpe.weight holds NaN or infinite values."),
    "-inf bias": (set_value("h.0.ln_1.bias", -np.inf), 0,
                  "checkpoint {real}: h.0.ln_1.bias holds NaN or infinite values."),
    "1e30 weight": (set_value("h.0.attn.c_attn.bias", 1e30), 0,
                    "checkpoint {real}: h.0.attn.c_attn.bias holds values up to 1e+30: not a usable weight"),
    "inf in an fp16 checkpoint": (set_value("h.0.ln_1.weight", np.inf, dtype=np.float16), 0,
                                  "checkpoint {real}: h.0.ln_1.weight holds NaN or infinite values."),
    "NaN in a block below": (set_value("h.0.mlp.c_fc.weight", np.nan), 1,
                             "checkpoint {real}: h.0.mlp.c_fc.weight holds NaN or infinite values."),
    "eps 0": (set_config(layer_norm_epsilon=0), 0,
              "{ckpt}/config.json: layer_norm_epsilon is 0, expected a number in (0, 1]."),
    "eps -1": (set_config(layer_norm_epsilon=-1.0), 0,
               "{ckpt}/config.json: layer_norm_epsilon is -1.0, expected a number in (0, 1]."),
    "eps abc": (set_config(layer_norm_epsilon="abc"), 0,
                '{ckpt}/config.json: layer_norm_epsilon is "abc", expected a number in (0, 1].'),
    "eps NaN": (set_config(layer_norm_epsilon=float("nan")), 0,
                "{ckpt}/config.json: layer_norm_epsilon is NaN, expected a number in (0, 1]."),
    "eps true": (set_config(layer_norm_epsilon=True), 0,
                 "{ckpt}/config.json: layer_norm_epsilon is true, expected a number in (0, 1]."),
    "n_layer 2.5": (set_config(n_layer=2.5), 0, "{ckpt}/config.json: n_layer is 2.5, expected an integer."),
    'n_head "4"': (set_config(n_head="4"), 0, '{ckpt}/config.json: n_head is "4", expected an integer.'),
    "n_embd true": (set_config(n_embd=True), 0, "{ckpt}/config.json: n_embd is true, expected an integer."),
    "n_positions null": (set_config(n_positions=None), 0,
                         "{ckpt}/config.json: n_positions is null, expected an integer."),
    "n_positions 0": (set_config(n_positions=0), 0,
                      "{ckpt}/config.json: n_positions is 0, expected an integer from 1 to 1048576."),
    "n_layer 10**6": (set_config(n_layer=10**6), 0,
                      "{ckpt}/config.json: n_layer is 1000000, expected an integer from 1 to 1000."),
    "n_embd not a multiple of n_head": (set_config(n_embd=66), 0,
                                        "{ckpt}/config.json: n_embd 66 is not a multiple of n_head 4."),
    "config.json a list": (replace_file("config.json", lambda p: p.write_text("[2, 4, 64]")), 0,
                           "{ckpt}/config.json is not a readable model config.json."),
    "config.json a dangling symlink": (replace_file("config.json", lambda p: p.symlink_to(p.parent / "nowhere")), 0,
                                       "{ckpt}/config.json is a dangling symlink (to {ckpt}/nowhere)."),
    "config.json a directory": (replace_file("config.json", Path.mkdir), 0, "{ckpt}/config.json is a directory."),
    "dangling symlink model.safetensors": (replace_file("model.safetensors", dangling), 0,
                                           "{ckpt}/model.safetensors is a dangling symlink (to "
                                           "{ckpt}/gone.safetensors)."),
    "directory model.safetensors": (replace_file("model.safetensors", Path.mkdir), 0,
                                    "{ckpt}/model.safetensors is a directory, expected a safetensors file."),
    "FIFO model.safetensors": (replace_file("model.safetensors", os.mkfifo), 0,  # opening it would block for ever
                               "{ckpt}/model.safetensors is not a regular file, expected a safetensors file."),
}
CLI_CASES = ["NaN weight", "1e30 weight", "eps abc", "n_layer 2.5", "dangling symlink model.safetensors",
             "directory model.safetensors"]


def build(case, tiny_ckpt, tmp_path) -> tuple[Path, int, str]:
    make, layer, message = CASES[case]
    ckpt = make(tiny_ckpt, tmp_path / "ckpt")
    return ckpt, layer, message.format(ckpt=ckpt, real=ckpt.resolve())


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_checkpoint_is_refused(case, tiny_ckpt, tmp_path):
    ckpt, layer, message = build(case, tiny_ckpt, tmp_path)
    with pytest.raises(BadInputError) as e:
        load_layer(str(ckpt), layer)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("case", CLI_CASES)
def test_corrupt_checkpoint_render_is_one_line_and_writes_nothing(case, tiny_ckpt, tmp_path, capsys):
    ckpt, _, message = build(case, tiny_ckpt, tmp_path)
    before = set(os.listdir(tmp_path))
    out = tmp_path / "out.mp4"
    code = main(["render", "demo", "-o", str(out), "--model", str(ckpt), *FAST])
    assert_refused(code, capsys.readouterr().err, message)
    assert set(os.listdir(tmp_path)) == before and not out.exists() and not (tmp_path / "out.work").exists()


def test_usable_edge_cases_load(tiny_ckpt, tmp_path):
    """A symlinked shard, a weight at the bound, an integral epsilon of 1 and no epsilon at all are fine."""
    linked = replace_file("model.safetensors", lambda p: p.symlink_to(tiny_ckpt / "model.safetensors"))
    assert load_layer(str(linked(tiny_ckpt, tmp_path / "linked")))[1].config.n_layer == 2
    w, _ = load_layer(str(set_value("h.0.attn.c_attn.weight", -MAX_WEIGHT)(tiny_ckpt, tmp_path / "big")))
    assert float(w.w_q[0, 0]) == -MAX_WEIGHT
    assert load_layer(str(set_config(layer_norm_epsilon=1)(tiny_ckpt, tmp_path / "eps1")))[1].config.eps == 1.0
    bare = set_config()(tiny_ckpt, tmp_path / "bare")
    config = json.loads((bare / "config.json").read_text())
    del config["layer_norm_epsilon"]
    (bare / "config.json").write_text(json.dumps(config))
    assert load_layer(str(bare))[1].config.eps == 1e-5


def test_hub_checkpoint_with_nan_is_refused_and_not_cached(tiny_ckpt, tmp_path, hub):  # noqa: F811
    hub.repos["bad/ckpt"] = set_value("h.0.attn.c_attn.weight", np.nan)(tiny_ckpt, tmp_path / "ckpt")
    with pytest.raises(BadInputError, match=f"checkpoint bad/ckpt@{SHA}: h.0.attn.c_attn.weight holds NaN"):
        load_layer("bad/ckpt")
    cache = tmp_path / "hf" / "badapple_jax" / "bad--ckpt" / SHA
    assert (cache / "wpe.weight.npy").is_file() and not (cache / "h.0.attn.c_attn.weight.npy").exists()


def test_hub_cache_with_nan_is_refused(tiny_ckpt, tmp_path, hub):  # noqa: F811
    """A cache entry written before these checks existed goes through them too."""
    load_layer("tiny/gpt2")
    entry = tmp_path / "hf" / "badapple_jax" / "tiny--gpt2" / SHA / "h.0.ln_1.bias.npy"
    x = np.load(entry)
    x[3] = np.inf
    np.save(entry, x)
    with pytest.raises(BadInputError, match=f"checkpoint tiny/gpt2@{SHA}: h.0.ln_1.bias holds NaN or infinite"):
        load_layer("tiny/gpt2")

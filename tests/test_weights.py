"""weights.py against the tensors transformers itself wrote, and the hub path against a loopback server."""
import hashlib
import http.server
import json
import re
import shutil
import socket
import struct
import threading
import urllib.parse
from collections import Counter

import jax
import numpy as np
import pytest
from huggingface_hub import constants
from safetensors.numpy import load_file, save_file

from badapple_jax.errors import BadInputError
from badapple_jax.safetensors_range import file_reader, read_header, read_tensor
from badapple_jax.families import RANDOM
from badapple_jax.model import pick_head
from badapple_jax.weights import load_layer, random_layer

from conftest import TINY

E = TINY["n_embd"]
D = E // TINY["n_head"]
SHA = "0123456789abcdef0123456789abcdef01234567"
LAYER0_KEYS = ["wpe.weight", "h.0.ln_1.weight", "h.0.ln_1.bias", "h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias"]


@pytest.fixture(scope="module")
def state(tiny_ckpt):
    """The tiny model's parameters as transformers loads them."""
    from transformers import GPT2Model

    return {k: v.numpy() for k, v in GPT2Model.from_pretrained(tiny_ckpt).state_dict().items()}


def rewrite(src, dst, edit=lambda t: t, shards=1, dtype=None):
    """Copy checkpoint `src` to `dst`, editing its tensor dict, optionally cast and split over shards."""
    dst.mkdir()
    shutil.copy(src / "config.json", dst)
    tensors = edit(load_file(src / "model.safetensors"))
    if dtype:
        tensors = {k: v.astype(dtype) for k, v in tensors.items()}
    keys = sorted(tensors)
    for i in range(shards):
        part = keys[i::shards]
        save_file({k: tensors[k] for k in part}, dst / f"model-{i + 1:05d}-of-{shards:05d}.safetensors")
    return dst


def assert_layer_equal(w, ref):
    """LayerWeights `w` against a dict of checkpoint tensors `ref` (HF names)."""
    L = len(w.blocks)
    np.testing.assert_array_equal(w.pos, ref["wpe.weight"])
    np.testing.assert_array_equal(w.ln_g, ref[f"h.{L}.ln_1.weight"])
    np.testing.assert_array_equal(w.ln_b, ref[f"h.{L}.ln_1.bias"])
    np.testing.assert_array_equal(w.w_q, ref[f"h.{L}.attn.c_attn.weight"][:, :E])  # Q and K, not V
    np.testing.assert_array_equal(w.w_k, ref[f"h.{L}.attn.c_attn.weight"][:, E:2 * E])
    np.testing.assert_array_equal(w.b_q, ref[f"h.{L}.attn.c_attn.bias"][:E])
    np.testing.assert_array_equal(w.b_k, ref[f"h.{L}.attn.c_attn.bias"][E:2 * E])
    for i, block in enumerate(w.blocks):
        for path, x in jax.tree_util.tree_leaves_with_path(block):
            names = [p.key for p in path]
            key = ".".join([f"h.{i}", *names[:-1], {"g": "weight", "w": "weight", "b": "bias"}[names[-1]]])
            np.testing.assert_array_equal(x, ref[key], err_msg=key)
        assert len(jax.tree_util.tree_leaves(block)) == 12


# --- local checkpoints -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [0, 1])
def test_local_matches_transformers(tiny_ckpt, state, layer):
    w, info = load_layer(str(tiny_ckpt), layer)
    assert_layer_equal(w, state)
    assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(w))
    assert not info.is_random and info.source.startswith("local ")
    assert info.config.n_layer == 2 and info.config.d_head == D and info.config.eps == 1e-5
    json.dumps(info.as_dict())


def test_pick_head_slices_q_and_k(tiny_ckpt, state):
    w, _ = load_layer(str(tiny_ckpt))
    W, b = state["h.0.attn.c_attn.weight"], state["h.0.attn.c_attn.bias"]
    for h in range(TINY["n_head"]):
        hw = pick_head(w, h)
        np.testing.assert_array_equal(hw.w_q, W[:, h * D:(h + 1) * D])
        np.testing.assert_array_equal(hw.b_q, b[h * D:(h + 1) * D])
        np.testing.assert_array_equal(hw.w_k, W[:, E + h * D:E + (h + 1) * D])
        np.testing.assert_array_equal(hw.b_k, b[E + h * D:E + (h + 1) * D])
        assert hw.w_q.shape == (E, D) and hw.b_k.shape == (D,)
    with pytest.raises(BadInputError, match="head 4 is out of range.*n_head 4"):
        pick_head(w, 4)


def test_prefixed_fp16_bf16_and_sharded_checkpoints(tiny_ckpt, state, tmp_path):
    prefixed = rewrite(tiny_ckpt, tmp_path / "prefixed", lambda t: {f"transformer.{k}": v for k, v in t.items()})
    sharded = rewrite(tiny_ckpt, tmp_path / "sharded", shards=2)
    assert len(list(sharded.glob("*.safetensors"))) == 2
    for path in (prefixed, sharded):
        assert_layer_equal(load_layer(str(path), 1)[0], state)
    half = rewrite(tiny_ckpt, tmp_path / "fp16", dtype=np.float16)
    assert_layer_equal(load_layer(str(half), 1)[0], {k: v.astype(np.float16).astype(np.float32) for k, v in state.items()})


def test_bf16_is_upcast_exactly(tmp_path):
    """BF16 has no numpy dtype: write the raw format by hand and compare with truncated float32 bits."""
    x = np.random.default_rng(0).standard_normal(6).astype(np.float32)
    bf16 = (x.view(np.uint32) >> 16).astype(np.uint16)
    header = json.dumps({"t": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bf16.tobytes())
    read = file_reader(path)
    got = read_tensor(read, read_header(read, str(path))["t"], "t", str(path))
    np.testing.assert_array_equal(got, (x.view(np.uint32) & 0xFFFF0000).view(np.float32).reshape(2, 3))


@pytest.mark.parametrize("edit, match", [
    (lambda t: {k: v for k, v in t.items() if k != "h.0.ln_1.bias"}, "lacks h.0.ln_1.bias"),
    (lambda t: {**t, "h.0.attn.c_attn.weight": t["h.0.attn.c_attn.weight"][:, :96]},
     r"h.0.attn.c_attn.weight has shape \(64, 96\), expected \(64, 192\)"),
    (lambda t: {**t, "wpe.weight": t["wpe.weight"].astype(np.int32)}, "wpe.weight has dtype I32"),
])
def test_checkpoint_that_does_not_fit(tiny_ckpt, tmp_path, edit, match):
    bad = rewrite(tiny_ckpt, tmp_path / "bad", edit)
    with pytest.raises(BadInputError, match=match):
        load_layer(str(bad))


def test_truncated_and_garbage_files(tiny_ckpt, tmp_path):
    bad = rewrite(tiny_ckpt, tmp_path / "bad")
    (shard,) = bad.glob("*.safetensors")
    data = shard.read_bytes()
    for content, match in [(data[:-100], "is truncated"), (data[:5], "shorter than 8 bytes"),
                           (b"\xff" * 4096, "header length .* is impossible"),
                           (struct.pack("<Q", 10) + b"{not json}", "not valid JSON")]:
        shard.write_bytes(content)
        with pytest.raises(BadInputError, match=match) as e:
            load_layer(str(bad))
        assert shard.name in str(e.value) and "\n" not in str(e.value)


def test_directory_errors(tiny_ckpt, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="empty has no config.json"):
        load_layer(str(tmp_path / "empty"))
    (tmp_path / "nofiles").mkdir()
    shutil.copy(tiny_ckpt / "config.json", tmp_path / "nofiles")
    with pytest.raises(BadInputError, match=r"nofiles holds no \*.safetensors"):
        load_layer(str(tmp_path / "nofiles"))
    with pytest.raises(BadInputError, match="layer 2 is out of range.*n_layer 2"):
        load_layer(str(tiny_ckpt), 2)
    with pytest.raises(BadInputError, match="not a directory"):
        load_layer(str(tmp_path / "missing"))


# --- random weights ----------------------------------------------------------------------------------------------


def test_random_gpt2_xl_layer0():
    w, info = load_layer("random:gpt2-xl")
    assert info.is_random and "RANDOM" in info.source and info.config == RANDOM["gpt2-xl"]
    assert (w.pos.shape, w.ln_g.shape, w.w_q.shape, w.w_k.shape, w.b_k.shape) == (
        (1024, 1600), (1600,), (1600, 1600), (1600, 1600), (1600,))
    assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(w)) and w.blocks == ()
    assert pick_head(w, 24).w_k.shape == (1600, 64)
    again, _ = load_layer("random:gpt2-xl")
    for a, b in zip(jax.tree_util.tree_leaves(w), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(a, b)
    assert 0.01 < float(w.pos.std()) < 0.03 and 0.05 < float(w.ln_g.std()) < 0.2 and float(w.ln_b.std()) > 0


def test_random_gpt2_deeper_layer_shares_tensors():
    w2 = random_layer(RANDOM["gpt2"], 2)
    assert len(w2.blocks) == 2 and w2.blocks[1]["mlp"]["c_fc"]["w"].shape == (768, 3072)
    w0 = random_layer(RANDOM["gpt2"], 0)
    np.testing.assert_array_equal(w0.pos, w2.pos)
    np.testing.assert_array_equal(w0.w_k, w2.blocks[0]["attn"]["c_attn"]["w"][:, 768:1536])
    assert not np.array_equal(random_layer(RANDOM["gpt2"], 0, seed=1).pos, w0.pos)


def test_random_errors():
    with pytest.raises(BadInputError, match="random:gpt2, random:gpt2-medium, random:gpt2-large, random:gpt2-xl, random:minilm, random:bert-base"):
        load_layer("random:gpt3")
    with pytest.raises(BadInputError, match="layer 48 is out of range.*n_layer 48"):
        load_layer("random:gpt2-xl", 48)


# --- hub, through a loopback server ------------------------------------------------------------------------------


class FakeHub(http.server.ThreadingHTTPServer):
    """Serves /<repo>/resolve/<rev>/<file> with HEAD, Range (206) and the hub's 404 error codes."""

    def __init__(self, repos):
        self.repos, self.served = repos, Counter()  # repo -> directory; file name -> body bytes sent
        self.counting = threading.Lock()  # requests are served on threads: `+=` on a Counter could lose a count
        self.ranges = True  # False: answer Range requests with the whole file, as a plain web server might
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self):
        self.shutdown()
        self.server_close()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.respond(body=False)

    def do_GET(self):
        self.respond(body=True)

    def respond(self, body):
        m = re.fullmatch(r"/(.+)/resolve/([^/]+)/(.+)", urllib.parse.unquote(self.path))
        if not m:  # e.g. huggingface_hub's own /api/... calls
            return self.fail("NotFound")
        repo, rev, name = m.groups()
        if repo not in self.server.repos:
            return self.fail("RepoNotFound")
        if rev not in ("main", SHA):
            return self.fail("RevisionNotFound")
        path = self.server.repos[repo] / name
        if not path.is_file():
            return self.fail("EntryNotFound")
        data = path.read_bytes()
        chunk, status = data, 200
        if body and self.server.ranges and (m := re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))):
            start, end = int(m[1]), min(int(m[2]), len(data) - 1)
            chunk, status = data[start:end + 1], 206
        self.send_response(status)
        self.send_header("X-Repo-Commit", SHA)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if body:  # counted before it is sent: the client may go on (and the test read the count) once it has it
            with self.server.counting:
                self.server.served[name] += len(chunk)
            self.wfile.write(chunk)

    def fail(self, code):
        self.send_response(404)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def point_hub_at(monkeypatch, endpoint):
    """What HF_ENDPOINT does, after import: huggingface_hub copied it into these constants."""
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")


def load_from_hub(monkeypatch, tmp_path, repo: str, ckpt, layer: int):
    """load_layer(repo, layer) from a fake hub serving checkpoint directory `ckpt` as `repo`, every cache in
    tmp_path -> (weights, info, bytes of model.safetensors served)."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("BADAPPLE_JAX_CACHE", raising=False)
    server = FakeHub({repo: ckpt})
    point_hub_at(monkeypatch, server.url)
    try:
        w, info = load_layer(repo, layer)
    finally:
        server.stop()
    return w, info, server.served["model.safetensors"]


@pytest.fixture
def hub(tiny_ckpt, tmp_path, monkeypatch):
    """A fake hub holding the tiny checkpoint as tiny/gpt2, with every cache in tmp_path."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("BADAPPLE_JAX_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    server = FakeHub({"tiny/gpt2": tiny_ckpt})
    point_hub_at(monkeypatch, server.url)
    yield server
    server.stop()


def needed_bytes(path, keys):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return 8 + n + sum(header[k]["data_offsets"][1] - header[k]["data_offsets"][0] for k in keys)


def test_hub_reads_only_needed_bytes_then_works_offline(hub, tiny_ckpt, tmp_path):
    local, _ = load_layer(str(tiny_ckpt))
    w, info = load_layer("tiny/gpt2")
    for a, b in zip(jax.tree_util.tree_leaves(w), jax.tree_util.tree_leaves(local)):
        np.testing.assert_array_equal(a, b)
    assert info.source.startswith(f"hub tiny/gpt2@{SHA} (range requests") and not info.is_random
    size = (tiny_ckpt / "model.safetensors").stat().st_size
    assert hub.served["model.safetensors"] == needed_bytes(tiny_ckpt / "model.safetensors", LAYER0_KEYS) < size / 2
    cache = tmp_path / "hf" / "badapple_jax" / "tiny--gpt2"
    assert (cache / "refs" / "main").read_text() == SHA and (cache / SHA / "config.json").is_file()

    hub.stop()
    again, info = load_layer("tiny/gpt2")
    assert info.source.startswith(f"hub tiny/gpt2@{SHA} (cached in")
    for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(local)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(BadInputError, match="unreachable.*random:"):  # layer 1 needs tensors never fetched
        load_layer("tiny/gpt2", 1)


def test_hub_prefers_full_snapshot_and_cache_dir(hub, tiny_ckpt, state, tmp_path):
    from huggingface_hub import hf_hub_download

    hf_hub_download("tiny/gpt2", "model.safetensors")
    hub.served.clear()
    w, info = load_layer("tiny/gpt2", 1, cache_dir=tmp_path / "mine")
    assert_layer_equal(w, state)
    assert hub.served["model.safetensors"] == 0 and "HF snapshot" in info.source
    assert (tmp_path / "mine" / "tiny--gpt2" / SHA / "h.0.mlp.c_fc.weight.npy").is_file()


def test_hub_errors(hub, tmp_path, monkeypatch):
    with pytest.raises(BadInputError, match="unknown model 'nobody/nothing': no such repo on the hub"):
        load_layer("nobody/nothing")
    with pytest.raises(BadInputError, match="layer 7 is out of range.*n_layer 2"):
        load_layer("tiny/gpt2", 7)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        point_hub_at(monkeypatch, f"http://127.0.0.1:{s.getsockname()[1]}")
    with pytest.raises(BadInputError, match="cannot fetch gpt2-xl: .*unreachable.*model random:gpt2-xl") as e:
        load_layer("gpt2-xl")
    assert "\n" not in str(e.value)


def test_hub_refuses_a_server_that_ignores_ranges(hub):
    hub.ranges = False
    with pytest.raises(BadInputError, match="ignored the byte-range request"):
        load_layer("tiny/gpt2")

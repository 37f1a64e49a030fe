"""Load what one GPT-2 layer's attention heads read: wpe, the blocks below, ln_1 and c_attn.

Checkpoints are Hugging Face safetensors with GPT-2 key names (SPEC section 2). Only the
needed tensors are read: from a local directory, from the hub by HTTP range requests (never
the whole 6.4 GB gpt2-xl file), or generated at random for offline runs. Hub tensors are
kept as fp32 .npy files so a later run needs no network. Every key and shape is checked
against config.json, as nanoGPT's `from_pretrained` does.
"""
import contextlib
import dataclasses
import io
import json
import math
import os
import zlib
from pathlib import Path

import flax.struct
import httpx2
import jax
import jax.numpy as jnp
import numpy as np
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (GatedRepoError, HFValidationError, HfHubHTTPError, LocalEntryNotFoundError,
                                    OfflineModeIsEnabled, RemoteEntryNotFoundError, RepositoryNotFoundError)
from huggingface_hub.utils import validate_repo_id

from .errors import BadInputError
from .files import write_atomic
from .safetensors_range import TIMEOUT, Read, file_reader, http_reader, read_header, read_tensor

SAFETENSORS = "model.safetensors"
REF = "main"  # the hub branch read; it is pinned to its commit sha for the cache


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int  # rows of wpe
    eps: float  # LayerNorm epsilon (config `layer_norm_epsilon`)

    @property
    def d_head(self) -> int:
        return self.n_embd // self.n_head


RANDOM_CONFIGS = {  # SPEC section 2
    "gpt2": ModelConfig(n_layer=12, n_head=12, n_embd=768, n_positions=1024, eps=1e-5),
    "gpt2-medium": ModelConfig(n_layer=24, n_head=16, n_embd=1024, n_positions=1024, eps=1e-5),
    "gpt2-large": ModelConfig(n_layer=36, n_head=20, n_embd=1280, n_positions=1024, eps=1e-5),
    "gpt2-xl": ModelConfig(n_layer=48, n_head=25, n_embd=1600, n_positions=1024, eps=1e-5),
}


@flax.struct.dataclass
class LayerWeights:
    wpe: jax.Array  # [n_positions, n_embd]
    ln_g: jax.Array  # [n_embd]  ln_1 of the target layer
    ln_b: jax.Array  # [n_embd]
    c_attn_w: jax.Array  # [n_embd, 3*n_embd]  Conv1D: x @ W
    c_attn_b: jax.Array  # [3*n_embd]
    blocks: tuple  # blocks 0..layer-1 as picoGPT nested dicts (see `_block`)
    config: ModelConfig = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class HeadWeights:
    wpe: jax.Array  # [n_positions, n_embd]
    ln_g: jax.Array  # [n_embd]
    ln_b: jax.Array  # [n_embd]
    w_q: jax.Array  # [n_embd, d_head]
    b_q: jax.Array  # [d_head]
    w_k: jax.Array  # [n_embd, d_head]
    b_k: jax.Array  # [d_head]
    blocks: tuple
    config: ModelConfig = flax.struct.field(pytree_node=False)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str  # as passed to --model
    source: str  # one readable line: where the weights came from
    is_random: bool
    config: ModelConfig

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def pick_head(w: LayerWeights, head: int) -> HeadWeights:
    """Head `head`'s Q and K columns of the fused c_attn (Q, K, V blocks of n_embd columns each)."""
    c = w.config
    if not 0 <= head < c.n_head:
        raise BadInputError(f"head {head} is out of range: the model has n_head {c.n_head} (valid 0..{c.n_head - 1}).")
    d, E = c.d_head, c.n_embd
    q, k = slice(head * d, (head + 1) * d), slice(E + head * d, E + (head + 1) * d)
    return HeadWeights(wpe=w.wpe, ln_g=w.ln_g, ln_b=w.ln_b, w_q=w.c_attn_w[:, q], b_q=w.c_attn_b[q],
                       w_k=w.c_attn_w[:, k], b_k=w.c_attn_b[k], blocks=w.blocks, config=c)


def pick_heads(w: LayerWeights, heads) -> HeadWeights:
    """Several heads stacked on a leading axis of every array: a group one embedding drives (colour)."""
    return jax.tree.map(lambda *a: jnp.stack(a), *[pick_head(w, h) for h in heads])


def load_layer(model: str | os.PathLike, layer: int = 0, *, cache_dir: str | os.PathLike | None = None
               ) -> tuple[LayerWeights, ModelInfo]:
    """Weights of `layer` from `random:NAME`, a local directory (a str or a Path) or a hub repo id."""
    model = os.fspath(model)
    if not model.strip():  # Path("") would be the current directory
        raise BadInputError("model is empty: give a hub id, a local directory or random:NAME.")
    if model.startswith("random:"):
        config = RANDOM_CONFIGS.get(model.removeprefix("random:"))
        if config is None:
            raise BadInputError(f"unknown random model '{model}': use one of "
                                + ", ".join(f"random:{n}" for n in RANDOM_CONFIGS) + ".")
        source = f"RANDOM weights (GPT-2-shaped {model.removeprefix('random:')}, seed 0) - not a trained model"
        return random_layer(config, layer), ModelInfo(model, source, True, config)
    path = Path(model).expanduser()
    if path.is_dir():
        return _load_local(path, layer, model)
    if path.exists() or model.startswith(("/", ".", "~")):
        raise BadInputError(f"model '{model}' is not a directory holding config.json and *.safetensors.")
    try:
        validate_repo_id(model)
    except HFValidationError:
        raise BadInputError(f"unknown model '{model}': not a local directory and not a valid hub repo id.") from None
    return _load_hub(model, layer, cache_dir)


def random_layer(config: ModelConfig, layer: int = 0, seed: int = 0) -> LayerWeights:
    """GPT-2-initialised random weights; LayerNorms and biases randomised too so no term vanishes."""
    _check_layer(config, layer, "the random model")

    def tensor(key, shape):  # own stream per (seed, key): a tensor does not depend on which layer is asked
        x = np.random.default_rng([seed, zlib.crc32(key.encode())]).standard_normal(shape, dtype=np.float32)
        if ".ln_" in key:
            return 1 + 0.1 * x if key.endswith(".weight") else 0.02 * x
        if key.endswith("c_proj.weight"):  # GPT-2 scales the residual projections by 1/sqrt(2 n_layer)
            return x * np.float32(0.02 / math.sqrt(2 * config.n_layer))
        return 0.02 * x

    arrays = {k: tensor(k, s) for k, s in _expected_shapes(config, layer).items()}
    return _layer_weights(arrays, config, layer, "the random model")


def _check_layer(config: ModelConfig, layer: int, what: str):
    if not 0 <= layer < config.n_layer:
        raise BadInputError(f"layer {layer} is out of range: {what} has n_layer {config.n_layer} "
                            f"(valid 0..{config.n_layer - 1}).")


def _expected_shapes(c: ModelConfig, layer: int) -> dict[str, tuple[int, ...]]:
    """Checkpoint key -> shape of everything `layer`'s heads read (HF GPT-2 names, Conv1D as [in, out])."""
    E = c.n_embd
    shapes = {"wpe.weight": (c.n_positions, E)}
    for i in range(layer):
        shapes |= {f"h.{i}.ln_1.weight": (E,), f"h.{i}.ln_1.bias": (E,),
                   f"h.{i}.attn.c_attn.weight": (E, 3 * E), f"h.{i}.attn.c_attn.bias": (3 * E,),
                   f"h.{i}.attn.c_proj.weight": (E, E), f"h.{i}.attn.c_proj.bias": (E,),
                   f"h.{i}.ln_2.weight": (E,), f"h.{i}.ln_2.bias": (E,),
                   f"h.{i}.mlp.c_fc.weight": (E, 4 * E), f"h.{i}.mlp.c_fc.bias": (4 * E,),
                   f"h.{i}.mlp.c_proj.weight": (4 * E, E), f"h.{i}.mlp.c_proj.bias": (E,)}
    return shapes | {f"h.{layer}.ln_1.weight": (E,), f"h.{layer}.ln_1.bias": (E,),
                     f"h.{layer}.attn.c_attn.weight": (E, 3 * E), f"h.{layer}.attn.c_attn.bias": (3 * E,)}


def _block(a: dict, i: int) -> dict:
    """Block i in picoGPT's layout: LayerNorms as {g, b}, Conv1D linears as {w, b}."""
    ln = lambda name: {"g": a[f"h.{i}.{name}.weight"], "b": a[f"h.{i}.{name}.bias"]}
    linear = lambda name: {"w": a[f"h.{i}.{name}.weight"], "b": a[f"h.{i}.{name}.bias"]}
    return {"ln_1": ln("ln_1"), "attn": {"c_attn": linear("attn.c_attn"), "c_proj": linear("attn.c_proj")},
            "ln_2": ln("ln_2"), "mlp": {"c_fc": linear("mlp.c_fc"), "c_proj": linear("mlp.c_proj")}}


# Largest |weight| accepted. GPT-2 initialises at N(0, 0.02) and training keeps its parameters of order 1, with
# outliers (a few LayerNorm gains) far below 1e3; 1e4 leaves a wide margin for any fine-tune. Past it a weight is
# corruption, not a model: a query and a key weight that size make attention logits (products of two weights summed
# over n_embd) so large that softmax is one-hot and the optimiser has no gradient, and larger values overflow
# float32 so the render ends in NaN and black frames.
MAX_WEIGHT = 1e4


def _check_values(key: str, x: np.ndarray, where: str):
    """Refuse a tensor holding NaN, inf or absurd magnitudes, which no optimiser can work with."""
    if x.size == 0:
        return
    most = float(np.max(np.abs(x)))  # one pass: NaN propagates through max, inf stays inf
    if not math.isfinite(most):
        raise BadInputError(f"checkpoint {where}: {key} holds NaN or infinite values.")
    if most > MAX_WEIGHT:
        raise BadInputError(f"checkpoint {where}: {key} holds values up to {most:.3g}: not a usable weight "
                            f"(|w| <= {MAX_WEIGHT:g} expected).")


def _layer_weights(arrays: dict[str, np.ndarray], config: ModelConfig, layer: int, where: str) -> LayerWeights:
    """Every loader ends here, so the values are checked whichever way they came (a hub cache included)."""
    for key, x in arrays.items():
        _check_values(key, x, where)
    a = {k: jnp.asarray(v, jnp.float32) for k, v in arrays.items()}
    return LayerWeights(wpe=a["wpe.weight"], ln_g=a[f"h.{layer}.ln_1.weight"], ln_b=a[f"h.{layer}.ln_1.bias"],
                        c_attn_w=a[f"h.{layer}.attn.c_attn.weight"], c_attn_b=a[f"h.{layer}.attn.c_attn.bias"],
                        blocks=tuple(_block(a, i) for i in range(layer)), config=config)


# Bounds far beyond any GPT-2 (gpt2-xl: 48 layers, n_embd 1600, 1024 positions) yet small enough that a corrupt
# config.json is refused here rather than by an out-of-memory error or a tensor loop of a billion layers.
CONFIG_INTS = {"n_layer": 1000, "n_head": 65536, "n_embd": 65536, "n_positions": 1 << 20}  # field -> largest usable


def _read_config(path: Path, where: str) -> ModelConfig:
    """The GPT-2 fields of a Hugging Face config.json (plain JSON: no transformers import needed), each checked:
    a float or a string where an integer belongs is a corrupt file, not something to round."""
    if not path.is_file():
        if path.exists() or path.is_symlink():
            _check_regular(path)
        raise BadInputError(f"{where} has no config.json; expected a directory with config.json and *.safetensors.")
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise BadInputError(f"cannot read {path}: {e.strerror or e}.") from None
    except (ValueError, RecursionError):
        raise BadInputError(f"{path} is not a readable GPT-2 config.json.") from None
    if not isinstance(raw, dict):
        raise BadInputError(f"{path} is not a readable GPT-2 config.json.")
    ints = {}
    for field, most in CONFIG_INTS.items():
        if field not in raw:
            raise BadInputError(f"{path} lacks {field}: it is not a GPT-2 config.json.")
        value = raw[field]
        if not isinstance(value, int) or isinstance(value, bool):  # JSON true is a Python int
            raise BadInputError(f"{path}: {field} is {_shown(value)}, expected an integer.")
        if not 1 <= value <= most:
            raise BadInputError(f"{path}: {field} is {_shown(value)}, expected an integer from 1 to {most}.")
        ints[field] = value
    eps = raw.get("layer_norm_epsilon", 1e-5)
    # Positive, or LayerNorm divides by zero on a constant row; at most 1 (GPT-2 uses 1e-5), since an epsilon the
    # size of the activations' variance no longer normalises them. json reads NaN and Infinity: hence isfinite.
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not (math.isfinite(eps) and 0 < eps <= 1):
        raise BadInputError(f"{path}: layer_norm_epsilon is {_shown(eps)}, expected a number in (0, 1].")
    config = ModelConfig(**ints, eps=float(eps))
    if config.n_embd % config.n_head:
        raise BadInputError(f"{path}: n_embd {config.n_embd} is not a multiple of n_head {config.n_head}.")
    return config


def _shown(value) -> str:
    """A config value as JSON on one short line (json.dumps escapes newlines)."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_regular(path: Path):
    """A file we are about to open must be a regular file: a dangling link or a directory is a broken checkpoint,
    and a FIFO would block the read forever."""
    if path.is_file():  # follows links: a link to a real file is fine
        return
    if path.is_symlink() and not path.exists():
        raise BadInputError(f"{path} is a dangling symlink (to {os.readlink(path)}).")
    what = "a directory" if path.is_dir() else "not a regular file"
    raise BadInputError(f"{path} is {what}, expected a safetensors file." if path.suffix == ".safetensors"
                        else f"{path} is {what}.")


def _index(files: list[tuple[str, Read, int | None]]) -> dict:
    """Key (without a `transformer.` prefix) -> (read, TensorInfo, file name), over all shards."""
    index = {}
    for name, read, size in files:
        for key, info in read_header(read, name, size).items():
            index.setdefault(key.removeprefix("transformer."), (read, info, name))
    return index


def _read_checked(index: dict, key: str, shape: tuple, where: str) -> np.ndarray:
    if key not in index:
        raise BadInputError(f"checkpoint {where} lacks {key} (looked for it with and without 'transformer.').")
    read, info, name = index[key]
    if info.shape != shape:  # checked before reading: never fetch a tensor that cannot be used
        raise BadInputError(f"checkpoint {where} does not fit its config.json: {key} has shape {info.shape}, "
                            f"expected {shape}.")
    return read_tensor(read, info, key, name)


def _load_local(path: Path, layer: int, model: str) -> tuple[LayerWeights, ModelInfo]:
    where = str(path.resolve())
    config = _read_config(path / "config.json", where)
    _check_layer(config, layer, where)
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise BadInputError(f"{where} holds no *.safetensors file.")
    for f in shards:
        _check_regular(f)
    index = _index([(str(f), file_reader(f), f.stat().st_size) for f in shards])
    arrays = {k: _read_checked(index, k, s, where) for k, s in _expected_shapes(config, layer).items()}
    return _layer_weights(arrays, config, layer, where), ModelInfo(model, f"local {where}", False, config)


class _Unreachable(BadInputError):
    pass


@contextlib.contextmanager
def _hub_errors(repo: str, file: str = SAFETENSORS):
    """Turn huggingface_hub / HTTP failures while fetching `file` into one-line BadInputErrors."""
    try:
        yield
    except GatedRepoError:
        raise BadInputError(f"model '{repo}' is gated on the hub: accept its terms and log in (hf auth login).") from None
    except RepositoryNotFoundError:
        raise BadInputError(f"unknown model '{repo}': no such repo on the hub and not a local directory.") from None
    except RemoteEntryNotFoundError:
        raise BadInputError(f"model '{repo}' has no {file} on the hub.") from None
    except (httpx2.TransportError, OfflineModeIsEnabled, LocalEntryNotFoundError, HfHubHTTPError) as e:
        raise _unreachable(repo) from e


def _unreachable(repo: str) -> _Unreachable:
    name = repo.split("/")[-1] if repo.split("/")[-1] in RANDOM_CONFIGS else "gpt2-xl"
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hugging Face hub is unreachable"
    return _Unreachable(f"cannot fetch {repo}: {why} and the weights are not cached; "
                        f"pass --model PATH (a directory with config.json and *.safetensors) or "
                        f"--model random:{name} for an offline run.")


def _cache_write(path: Path, data: bytes):
    """Into the cache atomically: a crash never leaves a half-written entry behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def _resolve(repo: str, root: Path) -> tuple[str, int | None]:
    """(commit sha of REF, size of model.safetensors): asked from the hub, else remembered from a past run."""
    ref_file = root / "refs" / REF
    try:
        with _hub_errors(repo):  # one HEAD: commit sha and file size, no body
            meta = get_hf_file_metadata(hf_hub_url(repo, SAFETENSORS, revision=REF), timeout=TIMEOUT)
    except _Unreachable:
        if ref_file.is_file():
            return ref_file.read_text().strip(), None
        snapshot = try_to_load_from_cache(repo, SAFETENSORS, revision=REF)  # .../snapshots/<sha>/model.safetensors
        if isinstance(snapshot, str):
            return Path(snapshot).parent.name, None
        raise
    sha = meta.commit_hash or REF
    _cache_write(ref_file, sha.encode())
    return sha, meta.size


def _cache_root(cache_dir) -> Path:
    default = Path(constants.HF_HUB_CACHE).parent / "badapple_jax"  # read now: HF_HOME may change after import
    return Path(cache_dir or os.environ.get("BADAPPLE_JAX_CACHE") or default).expanduser()


def _load_hub(repo: str, layer: int, cache_dir) -> tuple[LayerWeights, ModelInfo]:
    root = _cache_root(cache_dir) / repo.replace("/", "--")
    sha, size = _resolve(repo, root)
    rev_dir = root / sha
    if not (rev_dir / "config.json").is_file():
        with _hub_errors(repo, "config.json"):
            downloaded = Path(hf_hub_download(repo, "config.json", revision=sha, etag_timeout=TIMEOUT))
        _read_config(downloaded, f"{repo}@{sha}")  # checked before it enters the cache
        text = downloaded.read_bytes()
        _cache_write(rev_dir / "config.json", text)
    config = _read_config(rev_dir / "config.json", f"{repo}@{sha}")
    _check_layer(config, layer, repo)
    shapes = _expected_shapes(config, layer)
    missing = [k for k in shapes if not (rev_dir / f"{k}.npy").is_file()]
    how = f"cached in {rev_dir}"
    if missing:
        snapshot = try_to_load_from_cache(repo, SAFETENSORS, revision=sha)
        if isinstance(snapshot, str):  # a full download already on disk beats any request
            name, read, size, how = snapshot, file_reader(snapshot), os.path.getsize(snapshot), f"HF snapshot, {how}"
        else:
            name, how = f"{repo}@{sha}/{SAFETENSORS}", f"range requests, {how}"
            read = http_reader(hf_hub_url(repo, SAFETENSORS, revision=sha), name)
        with _hub_errors(repo):
            index = _index([(name, read, size)])
            for key in missing:  # checked against config.json and for usable values before they enter the cache
                x = _read_checked(index, key, shapes[key], name)
                _check_values(key, x, f"{repo}@{sha}")
                buffer = io.BytesIO()
                np.save(buffer, x)
                _cache_write(rev_dir / f"{key}.npy", buffer.getvalue())
    arrays = {k: np.load(rev_dir / f"{k}.npy") for k in shapes}
    info = ModelInfo(repo, f"hub {repo}@{sha} ({how})", False, config)
    return _layer_weights(arrays, config, layer, f"{repo}@{sha}"), info
